"""Finding a connector class by name, importing it only when it is used.

Built-in connectors are listed here as ``name -> "module:Class"`` so that a POP3 user never imports
exchangelib; third-party connectors come from the ``mailgate.connectors`` entry-point group. A
plugin that fails to import is reported when it is asked for, and does not break the others.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.base import Connector, ConnectorSettings
from engine.config.params import Mistake, build_from_params
from engine.errors import MailgateError, did_you_mean

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mailgate.connectors"
BUILTIN: Mapping[str, str] = {
    "folder": "connectors.folder:FolderConnector",
    "memory": "connectors.memory:MemoryConnector",
    "imap": "connectors.imap.connector:ImapConnector",
    "pop3": "connectors.pop3:Pop3Connector",
    "ews": "connectors.ews.read:EwsConnector",
    "graph": "connectors.graph.read:GraphConnector",
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
