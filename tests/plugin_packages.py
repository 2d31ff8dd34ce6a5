"""Third-party plugins as real distributions, for the registry tests.

``PluginSite`` writes a ``NAME-1.0.dist-info`` folder with an ``entry_points.txt`` and the plugin's
modules into a folder on ``sys.path``: exactly what ``pip install`` leaves behind, so
``importlib.metadata`` finds the entry points. The ``plugin_site`` fixture (tests/conftest.py)
gives a test one such folder and forgets the imported modules afterwards.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MISSING = "mailgate_dependency_that_is_not_installed"


class PluginSite:
    """A folder on ``sys.path`` into which tests install tiny distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def install(
        self,
        dist: str,
        entry_points: dict[str, str],
        modules: dict[str, str],
        group: str = "mailgate.connectors",
    ) -> None:
        """Write the modules and a ``DIST-1.0.dist-info`` registering the entry points under ``group``."""
        info = self.root / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = [f"[{group}]", *(f"{name} = {target}" for name, target in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)
