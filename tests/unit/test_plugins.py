"""The one plugin mechanism (engine/config/plugins.py) as connectors, transports and actions use it.

One list of built-ins (the in-code tables and pyproject.toml's entry points agree), a broken plugin
reported where it is named rather than raised, a did-you-mean for an unknown name, and the install
hint taken from the plugin class's ``extra`` attribute.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from plugin_packages import MISSING, PluginSite

from connectors.registry import CONNECTORS, TRANSPORTS
from engine.actions.registry import ACTIONS
from engine.config.model import load_config
from engine.config.plugins import PluginError, Registry
from engine.errors import ConfigError
from engine.rules.pack import load_pack

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
REGISTRIES: dict[str, Registry[Any]] = {"connector": CONNECTORS, "transport": TRANSPORTS, "action": ACTIONS}
CRASHING = {"mailgate_crashing": "raise RuntimeError('plugin bug at import')\n"}


def config_naming(kind: str, name: str) -> str:
    """A mailgate.yaml whose account connector, outgoing server type or pack step is ``name``."""
    if kind == "connector":
        return f"accounts:\n  - name: a\n    connector: {{type: {name}}}\n"
    if kind == "transport":
        return f"accounts:\n  - name: a\noutgoing:\n  servers:\n    - {{name: main, type: {name}}}\n"
    return "accounts:\n  - name: a\n    rules: local.yaml\n"


def pack_naming(action: str) -> str:
    """A pack with one rule whose only step is ``- do: ACTION``."""
    return (
        "extends: default\nrules:\n  - name: odd\n    when: {intent: unrecognised}\n"
        f"    outcome: logged\n    then:\n      - do: {action}\n    before: log_new_call\n"
    )


def problems_of(kind: str, name: str, folder: Path) -> list[str]:
    """The problems ``file:line:col`` stripped, that loading a config (or pack) naming ``name`` reports."""
    if kind == "action":
        (folder / "local.yaml").write_text(pack_naming(name))
        load = lambda: load_pack(str(folder / "local.yaml"), folder)  # noqa: E731
    else:
        (folder / "mailgate.yaml").write_text(config_naming(kind, name))
        load = lambda: load_config(folder / "mailgate.yaml")  # noqa: E731
    with pytest.raises(ConfigError) as refused:
        load()
    return [f"{p.line}:{p.col} {p.message}" for p in refused.value.problems]


@pytest.mark.parametrize("kind", REGISTRIES)
def test_the_built_in_tables_match_the_entry_points_declared_in_pyproject(kind: str) -> None:
    """Built-ins are registered like third-party plugins: the code's table is pyproject.toml's group."""
    registry = REGISTRIES[kind]
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][registry.group]
    assert dict(registry.builtin) == declared


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_built_in_loads_as_its_kind_under_its_own_name(kind: str) -> None:
    """Each table entry names an existing subclass of the kind's base whose ``name`` is its key."""
    registry = REGISTRIES[kind]
    for name in registry.builtin:
        cls = registry.load(name)
        assert issubclass(cls, registry.base) and cls.name == name


@pytest.mark.parametrize(
    ("kind", "typo", "suggestion"),
    [("connector", "imapp", "imap"), ("transport", "smtpp", "smtp"), ("action", "replay", "reply")],
)
def test_an_unknown_name_gets_a_did_you_mean(kind: str, typo: str, suggestion: str, tmp_path: Path) -> None:
    """A typo in a connector type, an outgoing server type or a step's action names the closest one."""
    with pytest.raises(PluginError, match=rf"\(did you mean '{suggestion}'\?\)"):
        REGISTRIES[kind].load(typo)
    [problem] = problems_of(kind, typo, tmp_path)
    assert f"{typo!r} (did you mean {suggestion!r}?)" in problem


@pytest.mark.parametrize("kind", REGISTRIES)
def test_a_broken_plugin_is_reported_where_it_is_named_not_raised(
    kind: str, plugin_site: PluginSite, tmp_path: Path
) -> None:
    """A plugin crashing at import is a problem of the config (or pack) naming it; others still load."""
    registry = REGISTRIES[kind]
    plugin_site.install(
        "mailgate_crashing", {"crashing": "mailgate_crashing:Crashing"}, CRASHING, registry.group
    )

    with pytest.raises(registry.error) as refused:
        registry.load("crashing")
    said = f"{registry.noun} 'crashing' cannot be loaded: RuntimeError: plugin bug at import"
    assert str(refused.value) == said
    assert "crashing" in registry.names()
    first = next(iter(registry.builtin))
    assert registry.load(first).name == first
    [problem] = problems_of(kind, "crashing", tmp_path)
    assert problem.endswith(said)


@pytest.mark.parametrize("kind", REGISTRIES)
def test_a_plugin_with_a_missing_library_says_which_extra_installs_it(
    kind: str, plugin_site: PluginSite
) -> None:
    """The hint names the plugin's distribution and the ``extra`` its class declares, for any kind."""
    registry = REGISTRIES[kind]
    source = f"""
        from {registry.base.__module__} import {registry.base.__name__}

        class Needy({registry.base.__name__}):
            name = "needy"
            extra = "fancy"
            requires = ("{MISSING}",)
    """
    plugin_site.install(
        "mailgate_needy", {"needy": "mailgate_needy:Needy"}, {"mailgate_needy": source}, registry.group
    )

    with pytest.raises(registry.error) as refused:
        registry.load("needy")
    assert str(refused.value) == (
        f"{registry.noun} 'needy' cannot be loaded: No module named '{MISSING}' "
        "(install it with: pip install 'mailgate_needy[fancy]')"
    )
