"""Finding a connector or an outgoing transport by type name, and building it from its config.

The built-in ones are listed here as ``name -> "module:Class"`` and imported only when used (a POP3
user never imports exchangelib); pyproject.toml declares the same names under the
``mailgate.connectors`` and ``mailgate.transports`` entry-point groups, where installed packages add
theirs. The lookup itself is ``engine.config.plugins.Registry``: a plugin that cannot be loaded is
reported when it is asked for and does not break the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.base import Connector, ConnectorSettings, Transport, TransportSettings
from engine.config.outgoing import OutgoingServer
from engine.config.params import Mistake, build_from_params
from engine.config.plugins import PluginError, Registry
from engine.config.reader import unset_secrets
from engine.errors import ConfigError, MailgateError, Problem

BUILTIN_CONNECTORS: Mapping[str, str] = {
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


class UnknownConnector(PluginError):
    """No connector is registered under that name, or it could not be loaded."""


class UnknownTransport(PluginError):
    """No transport is registered under that name, or it could not be loaded."""


CONNECTORS: Registry[Connector] = Registry(
    "mailgate.connectors",
    BUILTIN_CONNECTORS,
    Connector,  # type: ignore[type-abstract]
    noun="connector",
    type_noun="connector type",
    error=UnknownConnector,
)
TRANSPORTS: Registry[Transport] = Registry(
    "mailgate.transports",
    BUILTIN_TRANSPORTS,
    Transport,  # type: ignore[type-abstract]
    noun="outgoing server type",
    error=UnknownTransport,
)


def connector_names() -> list[str]:
    """Every connector name: built-in ones and those registered by installed packages."""
    return CONNECTORS.names()


def connector_class(name: str) -> type[Connector]:
    """Import and return the connector registered as ``name`` (UnknownConnector if it cannot be)."""
    return CONNECTORS.load(name)


def build_settings(name: str, raw: Mapping[str, Any]) -> tuple[ConnectorSettings | None, list[Mistake]]:
    """Validate an account's ``connector:`` mapping against the connector's Settings dataclass."""
    cls = connector_class(name)
    return build_from_params(cls.Settings, dict(raw), f"connector {name!r}")


def require_secrets(settings: Mapping[str, Any], needed_by: str) -> None:
    """Raise ConfigError at each setting whose ``${VAR}`` was not set when the config was read."""
    unset = unset_secrets(settings)
    if unset:
        raise ConfigError(Problem(p.file, p.line, p.col, f"{p.message}: {needed_by} needs it") for p in unset)


def make_connector(account: str, raw: Mapping[str, Any], base_dir: Path) -> Connector:
    """A ready-to-connect connector for an account (settings already checked by the config loader).

    A secret whose ``${VAR}`` was unset when the config was read is a ConfigError here, at its key.
    """
    require_secrets(raw, f"account {account!r}'s connector")
    name = str(raw.get("type", "folder"))
    settings, mistakes = build_settings(name, raw)
    if settings is None:
        raise MailgateError("; ".join(message for _, message in mistakes))
    return connector_class(name)(account, settings, base_dir)


def transport_names() -> list[str]:
    """Every transport name: built-in ones and those registered by installed packages."""
    return TRANSPORTS.names()


def transport_class(name: str) -> type[Transport]:
    """Import and return the transport registered as ``name`` (UnknownTransport if it cannot be)."""
    return TRANSPORTS.load(name)


def build_transport_settings(
    type_name: str, raw: Mapping[str, Any]
) -> tuple[TransportSettings | None, list[Mistake]]:
    """Validate one ``outgoing.servers`` entry against its transport's settings class."""
    cls = transport_class(type_name)
    params = {str(k): v for k, v in raw.items()}
    params.setdefault("type", type_name)
    return build_from_params(cls.Settings, params, f"outgoing server {str(raw.get('name', ''))!r}")


def make_transport(server: OutgoingServer, base_dir: Path) -> Transport:
    """A ready-to-use transport for a configured server (its settings were checked at load).

    A secret whose ``${VAR}`` was unset when the config was read is a ConfigError here, at its key.
    """
    require_secrets(server.settings, f"outgoing server {server.name!r}")
    settings, mistakes = build_transport_settings(server.type, server.settings)
    if settings is None:
        raise MailgateError("; ".join(message for _, message in mistakes))
    return transport_class(server.type)(settings, base_dir)
