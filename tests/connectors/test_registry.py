"""Finding connectors by name: built-in ones, ones other packages register, and broken plugins.

Third-party connectors are real distributions installed by the ``plugin_site`` fixture
(tests/plugin_packages.py), so ``importlib.metadata`` finds them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_packages import MISSING, PluginSite

from connectors.folder import FolderConnector
from connectors.registry import (
    UnknownConnector,
    build_settings,
    connector_class,
    connector_names,
    make_connector,
)
from engine.config.model import load_config
from engine.errors import ConfigError

SAMPLE_MODULE = '''
from __future__ import annotations
from dataclasses import dataclass
from connectors.base import ConnectorSettings, MessageRef
from connectors.memory import MemoryConnector


@dataclass(frozen=True)
class SampleSettings(ConnectorSettings):
    """A sample plugin's settings."""

    count: int
    greeting: str = "hello"


class SampleConnector(MemoryConnector):
    """A third-party connector (reads nothing)."""

    name = "sample"
    Settings = SampleSettings  # type: ignore[assignment]

    def __init__(self, account, settings, base_dir):
        self.account, self.settings, self.base_dir = account, settings, base_dir

    async def connect(self) -> None:
        pass

    async def list_waiting(self) -> list[MessageRef]:
        return []
'''


def test_an_unknown_name_suggests_the_closest_known_one() -> None:
    """A typo gets a did-you-mean and the list of every registered name."""
    with pytest.raises(UnknownConnector) as refused:
        connector_class("imapp")
    assert str(refused.value) == (
        "unknown connector type 'imapp' (did you mean 'imap'?); known: ews, folder, graph, imap, memory, pop3"
    )


def test_built_in_connectors_are_found_by_name() -> None:
    """``folder`` is the folder connector, built from a config mapping."""
    assert connector_class("folder") is FolderConnector
    assert isinstance(make_connector("a", {"type": "folder"}, Path(".")), FolderConnector)


def test_a_connector_registered_by_another_package_is_found(plugin_site: PluginSite, tmp_path: Path) -> None:
    """An installed distribution's ``mailgate.connectors`` entry point adds a name, settings and all."""
    plugin_site.install(
        "mailgate_sample",
        {"sample": "mailgate_sample:SampleConnector"},
        {"mailgate_sample": SAMPLE_MODULE},
    )
    assert "sample" in connector_names()
    assert connector_class("sample").__name__ == "SampleConnector"
    settings, mistakes = build_settings("sample", {"type": "sample", "count": 3})
    assert mistakes == [] and settings is not None and settings.count == 3  # type: ignore[attr-defined]
    connector = make_connector("helpdesk", {"type": "sample", "count": 3}, tmp_path)
    assert connector.account == "helpdesk"


def test_a_plugins_settings_are_checked_by_the_config_loader(plugin_site: PluginSite, tmp_path: Path) -> None:
    """The config refuses a plugin's wrong setting at its key, with the plugin's own field names."""
    plugin_site.install(
        "mailgate_sample", {"sample": "mailgate_sample:SampleConnector"}, {"mailgate_sample": SAMPLE_MODULE}
    )
    config = tmp_path / "mailgate.yaml"
    config.write_text("accounts:\n  - name: a\n    connector: {type: sample, count: two, greting: hi}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert [(p.line, p.col, p.message) for p in refused.value.problems] == [
        (3, 38, "connector 'sample': count must be a whole number, not 'two'"),
        (3, 43, "connector 'sample' has no parameter 'greting' (did you mean 'greeting'?)"),
    ]


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_work(
    plugin_site: PluginSite, tmp_path: Path
) -> None:
    """A missing dependency in one plugin names the plugin and the module; other connectors load."""
    plugin_site.install(
        "mailgate_broken",
        {"broken": "mailgate_broken:BrokenConnector"},
        {"mailgate_broken": f"import {MISSING}\n"},
    )
    plugin_site.install(
        "mailgate_sample", {"sample": "mailgate_sample:SampleConnector"}, {"mailgate_sample": SAMPLE_MODULE}
    )
    with pytest.raises(UnknownConnector) as refused:
        connector_class("broken")
    assert str(refused.value) == f"connector 'broken' cannot be loaded: No module named '{MISSING}'"
    assert connector_class("sample").__name__ == "SampleConnector"
    assert connector_class("folder") is FolderConnector
    assert {"broken", "sample", "folder"} <= set(connector_names())

    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "accounts:\n  - name: a\n    connector: {type: broken}\n  - {name: b, connector: sample}\n"
    )
    with pytest.raises(ConfigError) as refused_config:
        load_config(config)
    assert [(p.line, p.col, p.message) for p in refused_config.value.problems] == [
        (3, 23, f"connector 'broken' cannot be loaded: No module named '{MISSING}'"),
        (4, 26, "connector 'sample' needs the parameter 'count'"),
    ]


def test_an_entry_point_naming_something_else_is_refused(plugin_site: PluginSite) -> None:
    """A registered object that is not a Connector subclass, or does not exist, is named as such."""
    plugin_site.install(
        "mailgate_odd",
        {"odd": "mailgate_odd:helper", "missing": "mailgate_odd:NoSuchConnector"},
        {"mailgate_odd": "def helper() -> None:\n    pass\n"},
    )
    with pytest.raises(UnknownConnector, match="mailgate_odd:helper is not a mailgate Connector"):
        connector_class("odd")
    with pytest.raises(UnknownConnector, match="mailgate_odd:NoSuchConnector does not exist"):
        connector_class("missing")


def test_importing_the_registry_and_the_config_imports_no_protocol_library(tmp_path: Path) -> None:
    """A folder or POP3 installation never pays for exchangelib, aioimaplib, msal or httpx."""
    (tmp_path / "mailgate.yaml").write_text("accounts:\n  - {name: a, connector: folder}\n")
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import connectors.registry
        from engine.config.model import load_config
        load_config(Path({str(tmp_path / "mailgate.yaml")!r}))
        connectors.registry.connector_class("folder")
        connectors.registry.connector_names()
        heavy = ("exchangelib", "aioimaplib", "msal", "httpx")
        print(",".join(sorted(m for m in heavy if m in sys.modules)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_a_plugin_that_crashes_on_import_is_reported_not_raised(plugin_site: PluginSite) -> None:
    """Any exception while importing a plugin becomes an UnknownConnector naming it."""
    plugin_site.install(
        "mailgate_crashing",
        {"crashing": "mailgate_crashing:CrashingConnector"},
        {"mailgate_crashing": "raise RuntimeError('plugin bug at import')\n"},
    )
    with pytest.raises(UnknownConnector) as refused:
        connector_class("crashing")
    assert str(refused.value) == "connector 'crashing' cannot be loaded: RuntimeError: plugin bug at import"
    assert connector_class("folder") is FolderConnector


def test_ews_and_graph_load_without_their_libraries_and_name_the_extra_to_install(tmp_path: Path) -> None:
    """Without exchangelib, httpx and msal the classes still import; looking them up says what to install."""
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "accounts:\n  - name: a\n    connector: {type: ews, service_endpoint: 'https://x/EWS/Exchange.asmx',"
        " email: a@x, username: u, password: p}\n"
    )
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("exchangelib", "httpx", "msal", "requests", "oauthlib"):
            sys.modules[name] = None  # as if the extras were not installed
        from pathlib import Path
        import connectors.ews.read, connectors.ews.send, connectors.graph.read, connectors.graph.send
        from connectors.registry import connector_class, transport_class
        from engine.config.model import load_config
        from engine.errors import MailgateError
        for look_up in (connector_class, transport_class):
            for name in ("ews", "graph"):
                try:
                    look_up(name)
                except MailgateError as exc:
                    print(exc)
        try:
            load_config(Path({str(config)!r}))
        except MailgateError as exc:
            print(exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    exchange = "No module named 'exchangelib' (install it with: pip install 'mailgate[exchange]')"
    graph = "No module named 'httpx' (install it with: pip install 'mailgate[graph]')"
    assert proc.stdout.splitlines() == [
        f"connector 'ews' cannot be loaded: {exchange}",
        f"connector 'graph' cannot be loaded: {graph}",
        f"outgoing server type 'ews' cannot be loaded: {exchange}",
        f"outgoing server type 'graph' cannot be loaded: {graph}",
        f"{config}:3:23: connector 'ews' cannot be loaded: {exchange}",
    ]
