"""Locates the files mailgate ships: subject grammars and bundled rule packs.

In a wheel they live in ``engine/_bundled/``; in a source checkout they are the top-level
``grammars/`` and ``rules/`` folders beside ``engine/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    bundled = _PACKAGE_DIR / "_bundled" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE_DIR.parent / name


def grammars_dir() -> Path:
    """Folder holding the ``.lark`` grammars."""
    return _data_dir("grammars")


def rules_dir() -> Path:
    """Folder holding the bundled rule packs (``NAME.yaml``)."""
    return _data_dir("rules")


def demo_dir() -> Path:
    """Folder holding the demo mailbox and fixtures used by ``mailgate demo``."""
    return _PACKAGE_DIR / "demo"


def bundled_pack_names() -> list[str]:
    """Names of the rule packs shipped with mailgate."""
    return sorted(p.stem for p in rules_dir().glob("*.yaml"))
