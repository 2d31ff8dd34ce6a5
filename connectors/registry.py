"""Finding a connector or a transport class by name, importing it only when it is used.

Built-in connectors and transports are listed here as ``name -> "module:Class"`` so that a POP3 user
never imports exchangelib; third-party ones come from the ``mailgate.connectors`` and
``mailgate.transports`` entry-point groups. A plugin that fails to import is reported when it is
asked for, and does not break the others.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.base import Connector, ConnectorSettings, Transport, TransportSettings
from engine.config.outgoing import OutgoingServer
from engine.config.params import Mistake, build_from_params
from engine.errors import MailgateError, did_you_mean

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mailgate.connectors"
TRANSPORT_ENTRY_POINT_GROUP = "mailgate.transports"
BUILTIN: Mapping[str, str] = {
    "folder": "connectors.folder:FolderConnector",
    "memory": "connectors.memory:MemoryConnector",
    "imap": "connectors.imap.connector:ImapConnector",
    "pop3": "connectors.pop3:Pop3Connector",
    "ews": "connectors.ews.read:EwsConnector",
    "graph": "connectors.graph.read:GraphConnector",
}
BUILTIN_TRANSPORTS: Mapping[str, str] = {
    "smtp": "connectors.smtp:SmtpTransport",
    "graph": "connectors.graph.send:GraphTransport",
    "ews": "connectors.ews.send:EwsTransport",
}


class UnknownConnector(MailgateError):
    """No connector is registered under that name, or it could not be imported."""


def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points  # only when a name is not built in (20 ms)

    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def connector_names() -> list[str]:
    """Every connector name: built-in ones and those registered by installed packages."""
    return sorted({*BUILTIN, *_plugins()})


def connector_class(name: str) -> type[Connector]:
    """Import and return the connector registered as ``name``."""
    target = BUILTIN.get(name) or _plugins().get(name)
    if target is None:
        raise UnknownConnector(
            f"unknown connector type {name!r}{did_you_mean(name, connector_names())}; "
            f"known: {', '.join(connector_names())}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        hint = ""
        if name in ("ews", "graph"):
            hint = f" (install it with: pip install 'mailgate[{'exchange' if name == 'ews' else 'graph'}]')"
        raise UnknownConnector(f"connector {name!r} cannot be loaded: {exc}{hint}") from None
    except AttributeError:
        raise UnknownConnector(f"connector {name!r}: {target} does not exist") from None
    except Exception as exc:  # a broken plugin must not take mailgate down with a traceback
        log.warning("connector plugin %s (%s) failed to import", name, target, exc_info=True)
        raise UnknownConnector(f"connector {name!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnector(f"connector {name!r}: {target} is not a mailgate Connector")
    return cls


def build_settings(name: str, raw: Mapping[str, Any]) -> tuple[ConnectorSettings | None, list[Mistake]]:
    """Validate an account's ``connector:`` mapping against the connector's Settings dataclass."""
    cls = connector_class(name)
    return build_from_params(cls.Settings, dict(raw), f"connector {name!r}")


def make_connector(account: str, raw: Mapping[str, Any], base_dir: Path) -> Connector:
    """A ready-to-connect connector for an account (settings already checked by the config loader)."""
    name = str(raw.get("type", "folder"))
    settings, mistakes = build_settings(name, raw)
    if settings is None:
        raise MailgateError("; ".join(message for _, message in mistakes))
    return connector_class(name)(account, settings, base_dir)


# --- transports -----------------------------------------------------------------------------------


class UnknownTransport(MailgateError):
    """No transport is registered under that name, or it could not be imported."""


def _transport_plugins() -> dict[str, str]:
    from importlib.metadata import entry_points  # only when a name is not built in

    found: dict[str, str] = {}
    for ep in entry_points(group=TRANSPORT_ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def transport_names() -> list[str]:
    """Every transport name: built-in ones and those registered by installed packages."""
    return sorted({*BUILTIN_TRANSPORTS, *_transport_plugins()})


def transport_class(name: str) -> type[Transport]:
    """Import and return the transport registered as ``name``."""
    target = BUILTIN_TRANSPORTS.get(name) or _transport_plugins().get(name)
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
