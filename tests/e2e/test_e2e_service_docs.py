"""docs/service.md stays true: its config example loads, its key tables list exactly the IMAP and
POP3 settings, its event table exactly the events the service logs, its state table every state;
and docs/configuration.md lists every account key (``poll_interval_seconds`` among them)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from connectors.imap.connector import ImapSettings
from connectors.pop3 import Pop3Settings
from engine.config.model import AccountConfig, load_config
from engine.storage import status

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "service.md"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def section(title: str) -> str:
    """The text of one section (``## title`` or ``### title``), up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    start = re.search(rf"^#+ {re.escape(title)}", text, re.MULTILINE)
    assert start is not None, f"no section {title!r} in {DOC}"
    end = re.compile(r"^#+ ", re.MULTILINE).search(text, start.end())
    return text[start.start() : end.start() if end else len(text)]


def first_column(text: str) -> list[str]:
    """The backquoted words in the first column of a section's table rows."""
    keys: list[str] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[0].startswith("`"):
            keys += re.findall(r"`([a-z_0-9]+)", cells[0])
    return keys


def test_the_config_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", "example")
    monkeypatch.setenv("POP3_PASSWORD", "example")
    [block] = _YAML_BLOCK.findall(DOC.read_text(encoding="utf-8"))
    (tmp_path / "mailgate.yaml").write_text(block, encoding="utf-8")
    config = load_config(tmp_path / "mailgate.yaml")
    assert [(a.name, a.connector_type) for a in config.accounts] == [("helpdesk", "imap"), ("sales", "pop3")]


@pytest.mark.parametrize(("title", "settings"), [("IMAP", ImapSettings), ("POP3", Pop3Settings)])
def test_each_connector_table_lists_exactly_its_settings(title: str, settings: type) -> None:
    documented = first_column(section(f"{title} (`type:"))
    assert sorted(documented) == sorted(f.name for f in dataclasses.fields(settings) if f.name != "type")


def test_the_event_table_lists_exactly_the_events_the_service_logs() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "engine" / "service").glob("*.py"))
    logged = set(
        re.findall(r"(?:log_event\w*\(\s*logging\.[A-Z]+[^,]*,\s*|format_event\()\"([a-z_]+)\"", source)
    )
    assert "processed" in logged and "poll_failed" in logged
    assert set(first_column(section("The log"))) == logged


def test_the_state_table_lists_every_state() -> None:
    stored = {status.STATE_OK, status.STATE_RETRYING, status.STATE_AUTH_FAILED, status.STATE_FAILED}
    shown = {"never_polled", "inactive", status.STATE_REMOVED}
    assert set(first_column(section("`mailgate status`"))) == stored | shown


def test_the_service_state_table_lists_every_state_of_the_heartbeat() -> None:
    states = {
        status.SERVICE_RUNNING,
        status.SERVICE_STOPPED,
        status.SERVICE_STALE,
        status.SERVICE_NEVER_STARTED,
    }
    assert set(first_column(section("Is the service running?"))) == states | {"0", "1", "3", "4"}


def test_the_configuration_page_lists_every_account_key_the_service_reads() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = text.index("## `accounts:`")
    table = text[start : text.index("\n### ", start)]
    assert set(first_column(table)) == {f.name for f in dataclasses.fields(AccountConfig)}
    assert "| `poll_interval_seconds` | number > 0 | `60` |" in table
