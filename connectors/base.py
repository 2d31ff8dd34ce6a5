"""The connector interface: how mailgate reads one mailbox, whatever the protocol.

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
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    - ``wait_for_new`` (push, e.g. IMAP IDLE) returns True as soon as new mail may be waiting,
      or False after ``timeout`` seconds; connectors without push keep the default (sleep).
    """

    name: ClassVar[str] = ""
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    supports_push: ClassVar[bool] = False

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

    async def wait_for_new(self, timeout: float) -> bool:
        """Wait for new mail (push) or for ``timeout`` seconds; True if mail may be waiting."""
        await asyncio.sleep(timeout)
        return False


def settings_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a ``connector:`` mapping (YAML nodes become plain values)."""
    return {str(k): v for k, v in raw.items()}
