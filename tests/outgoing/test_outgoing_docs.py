"""docs/outgoing.md stays true: its examples load, and its key tables list exactly the keys the code reads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from connectors.smtp import SmtpSettings
from engine.config.model import load_config
from engine.config.outgoing import OutgoingConfig
from engine.rules.pack import load_pack

DOC = Path(__file__).resolve().parents[2] / "docs" / "outgoing.md"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def section(title: str) -> str:
    """The text of one ``## title`` section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def table_keys(text: str) -> dict[str, str]:
    """First column (the backquoted keys, split on commas) -> second column, of every table row."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for key in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[key] = cells[1]
    return rows


@pytest.mark.parametrize("block", _YAML_BLOCK.findall(DOC.read_text(encoding="utf-8")))
def test_every_example_loads(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "example")
    if block.startswith("extends:"):
        (tmp_path / "example.yaml").write_text(block, encoding="utf-8")
        pack = load_pack("example.yaml", tmp_path)
        assert pack.templates
    else:
        (tmp_path / "mailgate.yaml").write_text(block, encoding="utf-8")
        assert load_config(tmp_path / "mailgate.yaml").outgoing.servers


def test_the_policy_table_lists_every_key_with_its_default() -> None:
    documented = table_keys(section("The policy keys"))
    defaults = OutgoingConfig()
    fields = {f.name for f in dataclasses.fields(OutgoingConfig)}
    assert set(documented) == fields
    for name in fields - {"servers"}:
        value = getattr(defaults, name)
        shown = str(list(value)) if isinstance(value, tuple) else f"{value:g}"
        assert documented[name] == f"`{shown}`", name


def test_the_smtp_table_lists_every_key() -> None:
    documented = table_keys(section("Outgoing servers"))
    assert set(documented) == {f.name for f in dataclasses.fields(SmtpSettings)}
