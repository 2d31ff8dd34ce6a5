"""The plugin interfaces of connectors/: how mailgate reads one mailbox, and how it sends one message.

**Connectors.** A connector reads one mailbox, whatever the protocol.

A connector is constructed from its account's validated settings and then driven, one pass at a
time, by the service (``engine.service``)::

    await connector.connect()
    refs = await connector.list_waiting()           # oldest first
    raws = await connector.fetch_many(refs[:50])     # a batch: a non-empty prefix of those asked
    ...pipeline commits each message's effects + ledger entry, the batch in one transaction...
    await connector.acknowledge_many(done)           # delete, or move to the processed folder
    await connector.close()

``fetch_many`` and ``acknowledge_many`` default to ``fetch`` and ``acknowledge`` in turn; a
connector whose protocol can do a batch in one round trip (IMAP, POP3) overrides them.

Integrators add a connector by subclassing ``Connector`` (and its ``Settings``) in their own
package and registering it under the ``mailgate.connectors`` entry-point group; see
docs/connectors.md. ``connectors.testing.ConnectorConformance`` is the test suite every
connector must pass.

**Transports.** A transport is made from one ``outgoing.servers`` entry and driven by
``engine.outgoing.delivery``::

    transport = make_transport(server, base_dir)
    reply = await transport.send(envelope)      # once per message; connects on first use
    ...
    await transport.close()

Both are found by type name through ``connectors.registry`` (built-ins imported only when used;
installed packages add theirs under the ``mailgate.connectors`` and ``mailgate.transports``
entry-point groups).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any, ClassVar

from engine.errors import MailgateError


class ConnectorError(MailgateError):
    """A recoverable failure (network, server busy, timeout): the service retries with backoff."""


class AuthenticationError(ConnectorError):
    """The server refused our credentials or token: reported loudly on the account, retried slowly."""


@dataclass(frozen=True)
class MessageRef:
    """A waiting message, addressed by a stable id (never by a sequence number).

    ``id`` is what the ledger-independent acknowledgement uses: an IMAP UID (with its
    UIDVALIDITY), a POP3 UIDL, an EWS or Graph item id, or a file name.
    """

    id: str
    size: int | None = None


@dataclass(frozen=True)
class ConnectorSettings:
    """Base of a connector's settings: its fields are the keys of the account's ``connector:`` mapping.

    Subclasses add fields (host, port, folder, ...) with types and defaults; ``__post_init__``
    may raise ValueError with a message for the admin. ``type`` is the registered connector name.
    """

    type: str


class Connector(ABC):
    """One mailbox, read through one protocol.

    Contract:
    - ``connect`` opens the session; it raises ``AuthenticationError`` for refused credentials
      and ``ConnectorError`` for anything else that may pass (never a bare library exception).
    - ``list_waiting`` returns the messages waiting now, oldest first, by stable id.
    - ``fetch`` returns the message's raw RFC 5322 bytes, unmodified.
    - ``acknowledge`` deletes the message (or moves it where the settings say) and must make the
      removal take effect before it returns where the protocol allows (IMAP expunge, POP3 QUIT
      happens in ``close``: then ``close`` must be awaited for it to count). Acknowledging a
      message that is already gone is not an error.
    - The service acknowledges only after the message's effects and ledger entry are committed;
      a connector must never delete on ``fetch``.
    - ``fetch_many`` returns the raw bytes of a non-empty prefix of ``refs``, in order (fewer than
      asked is fine, e.g. where a session must end); it raises only if not even the first could
      be fetched. ``acknowledge_many`` acknowledges every ref as ``acknowledge`` would.
    - ``close`` releases the session and never raises.
    - ``list_half_acknowledged`` lists the messages whose removal was begun and not finished (IMAP:
      flagged ``\\Deleted``, never expunged), whoever began it; they are not in ``list_waiting``.
      The service fetches them and hands back to ``finish_acknowledging`` only those its ledger
      holds, which must remove exactly those. Connectors without such a state keep the defaults.
    - ``wait_for_new`` (push, e.g. IMAP IDLE) returns True as soon as new mail may be waiting,
      or False after ``timeout`` seconds; connectors without push keep the default (sleep).
    - The module defining the class imports without its optional libraries (they are imported
      where used); ``requires`` names them and ``extra`` the extra that installs them, so that the
      registry can say "install it with: pip install 'mailgate[extra]'" instead of failing later.
    """

    name: ClassVar[str] = ""
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    supports_push: ClassVar[bool] = False
    extra: ClassVar[str | None] = None  # the extra installing the libraries it needs, e.g. "exchange"
    requires: ClassVar[tuple[str, ...]] = ()  # those libraries' import names, checked when it is looked up

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        self.account = account
        self.settings = settings
        self.base_dir = base_dir

    @abstractmethod
    async def connect(self) -> None:
        """Open the session."""

    @abstractmethod
    async def list_waiting(self) -> list[MessageRef]:
        """The waiting messages, oldest first."""

    @abstractmethod
    async def fetch(self, ref: MessageRef) -> bytes:
        """The raw bytes of one message."""

    @abstractmethod
    async def acknowledge(self, ref: MessageRef) -> None:
        """Delete the message, or move it to the processed folder."""

    @abstractmethod
    async def close(self) -> None:
        """End the session (never raises)."""

    async def fetch_many(self, refs: Sequence[MessageRef]) -> list[bytes]:
        """The raw bytes of the first ``len(result)`` messages of ``refs`` (default: ``fetch`` each)."""
        raws: list[bytes] = []
        for ref in refs:
            try:
                raws.append(await self.fetch(ref))
            except ConnectorError:
                if not raws:
                    raise
                break  # what was fetched is processed; the next batch begins with this one
        return raws

    async def acknowledge_many(self, refs: Sequence[MessageRef]) -> None:
        """Delete (or move) every message of ``refs`` (default: ``acknowledge`` each)."""
        for ref in refs:
            await self.acknowledge(ref)

    async def list_half_acknowledged(self) -> list[MessageRef]:
        """Messages whose removal was begun but not finished, oldest first (default: none)."""
        return []

    async def finish_acknowledging(self, refs: Sequence[MessageRef]) -> None:
        """Finish removing these messages of ``list_half_acknowledged``, and no other."""
        if refs:
            raise NotImplementedError(f"{type(self).__name__} lists no half-acknowledged message")

    async def wait_for_new(self, timeout: float) -> bool:
        """Wait for new mail (push) or for ``timeout`` seconds; True if mail may be waiting."""
        await asyncio.sleep(timeout)
        return False


def check_server_address(host: str, port: int | None, timeout: float) -> None:
    """Refuse (``ValueError``) an empty host, a port outside 1-65535 or a timeout that is not positive."""
    if not host.strip():
        raise ValueError("host must not be empty")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, not {port}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")


def settings_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a ``connector:`` mapping (YAML nodes become plain values)."""
    return {str(k): v for k, v in raw.items()}


# --- transports: how one composed message leaves mailgate ----------------------------------------


@dataclass(frozen=True, kw_only=True)
class TransportSettings:
    """Base of a transport's settings: its fields are the keys of one ``outgoing.servers`` entry.

    Subclasses add fields (host, port, tenant ...) with types and defaults; ``__post_init__`` may
    raise ValueError with a message for the admin. ``name`` is the server's name in the config,
    ``type`` the transport's registered name, ``from_address`` the server's default sender.
    """

    name: str
    type: str
    from_address: str | None = None


@dataclass(frozen=True)
class Envelope:
    """One message to send: the envelope sender and recipient and the message's MIME bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str


class SendError(MailgateError):
    """A message was not accepted.

    ``code`` is the server's reply code when it answered (SMTP 450, 550 ...). ``permanent`` marks
    a failure that retrying cannot cure even without a code (a transport without SMTP codes sets
    it); the delivery also treats the configured ``permanent_codes`` as permanent. ``connection``
    marks a failure of the server rather than of the message (cannot connect, TLS or login
    refused): the other messages for that server are not tried again in the same pass.
    """

    def __init__(
        self, message: str, *, code: int | None = None, permanent: bool = False, connection: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.connection = connection


class Transport(ABC):
    """One outgoing server, spoken to through one protocol.

    Contract:
    - ``send`` delivers one message to the server and returns the server's reply to it (for SMTP
      the final "250 ..." line), which is recorded with the message. It opens the connection on
      first use and reuses it for the next messages; after a failure it reconnects on the next call.
    - ``send`` raises ``SendError`` for every failure, never a bare library exception; it must not
      raise after the server has accepted the message (a failure while saying goodbye is ignored).
    - ``close`` ends the session and never raises.
    - A transport never decides about retries: it reports what the server said.
    - Like a connector, it imports its optional libraries where used and names them in
      ``requires``, with the ``extra`` that installs them.
    """

    name: ClassVar[str] = ""
    Settings: ClassVar[type[TransportSettings]] = TransportSettings
    extra: ClassVar[str | None] = None  # the extra installing the libraries it needs, e.g. "graph"
    requires: ClassVar[tuple[str, ...]] = ()  # those libraries' import names, checked when it is looked up

    def __init__(self, settings: TransportSettings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir

    @abstractmethod
    async def send(self, envelope: Envelope) -> str:
        """Deliver one message; the server's reply on success, SendError otherwise."""

    @abstractmethod
    async def close(self) -> None:
        """End the session (never raises)."""


def header_recipients(data: bytes) -> set[str]:
    """The addresses of a message's To, Cc and Bcc headers, lower-cased.

    Graph and EWS send to the recipients named in the message itself, not to an envelope
    recipient; their transports refuse an envelope recipient that is not among these.
    """
    headers = BytesHeaderParser().parsebytes(data)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
    return {address.lower() for _, address in getaddresses(fields) if address}
