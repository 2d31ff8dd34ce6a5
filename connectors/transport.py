"""The transport interface: how one composed message leaves mailgate (SMTP, Microsoft Graph, EWS ...).

A transport is made from one ``outgoing.servers`` entry and driven by ``engine.outgoing.delivery``::

    transport = make_transport(server, base_dir)
    reply = await transport.send(envelope)      # once per message; connects on first use
    ...
    await transport.close()

Transports are found by type name: the built-in ones are listed in ``BUILTIN`` as
``name -> "module:Class"`` and imported only when used; installed packages add theirs under the
``mailgate.transports`` entry-point group.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any, ClassVar

from engine.config.outgoing import OutgoingServer
from engine.config.params import Mistake, build_from_params
from engine.errors import MailgateError, did_you_mean

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mailgate.transports"
BUILTIN: Mapping[str, str] = {
    "smtp": "connectors.smtp:SmtpTransport",
    "graph": "connectors.graph.send:GraphTransport",
    "ews": "connectors.ews.send:EwsTransport",
}


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
    """

    name: ClassVar[str] = ""
    Settings: ClassVar[type[TransportSettings]] = TransportSettings

    def __init__(self, settings: TransportSettings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir

    @abstractmethod
    async def send(self, envelope: Envelope) -> str:
        """Deliver one message; the server's reply on success, SendError otherwise."""

    @abstractmethod
    async def close(self) -> None:
        """End the session (never raises)."""


class UnknownTransport(MailgateError):
    """No transport is registered under that name, or it could not be imported."""


def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points  # only when a name is not built in

    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def transport_names() -> list[str]:
    """Every transport name: built-in ones and those registered by installed packages."""
    return sorted({*BUILTIN, *_plugins()})


def transport_class(name: str) -> type[Transport]:
    """Import and return the transport registered as ``name``."""
    target = BUILTIN.get(name) or _plugins().get(name)
    if target is None:
        raise UnknownTransport(
            f"unknown outgoing server type {name!r}{did_you_mean(name, transport_names())}; "
            f"known: {', '.join(transport_names())}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise UnknownTransport(f"outgoing server type {name!r} cannot be loaded: {exc}") from None
    except AttributeError:
        raise UnknownTransport(f"outgoing server type {name!r}: {target} does not exist") from None
    if not (isinstance(cls, type) and issubclass(cls, Transport)):
        raise UnknownTransport(f"outgoing server type {name!r}: {target} is not a mailgate Transport")
    return cls


def build_transport_settings(
    type_name: str, raw: Mapping[str, Any]
) -> tuple[TransportSettings | None, list[Mistake]]:
    """Validate one ``outgoing.servers`` entry against its transport's settings class."""
    cls = transport_class(type_name)
    params = {str(k): v for k, v in raw.items()}
    params.setdefault("type", type_name)
    return build_from_params(cls.Settings, params, f"outgoing server {str(raw.get('name', ''))!r}")


def make_transport(server: OutgoingServer, base_dir: Path) -> Transport:
    """A ready-to-use transport for a configured server (its settings were checked at load)."""
    settings, mistakes = build_transport_settings(server.type, server.settings)
    if settings is None:
        raise MailgateError("; ".join(message for _, message in mistakes))
    return transport_class(server.type)(settings, base_dir)


def header_recipients(data: bytes) -> set[str]:
    """The addresses of a message's To, Cc and Bcc headers, lower-cased.

    Graph and EWS send to the recipients named in the message itself, not to an envelope
    recipient; their transports refuse an envelope recipient that is not among these.
    """
    headers = BytesHeaderParser().parsebytes(data)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
    return {address.lower() for _, address in getaddresses(fields) if address}
