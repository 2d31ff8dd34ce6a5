"""Timestamps in ``show``/``outbox``/``quarantine list``, and empty lists that say so."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_run import NEW_CALL, NO_SENDER, json_lines, run


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    """A starter installation (``mailgate init``)."""
    run(tmp_path, "init", ".")
    return tmp_path


def quarantine_three(desk: Path) -> list[int]:
    """Quarantine three mails without a sender; their entry ids."""
    for n in (1, 2, 3):
        (desk / f"anon-{n}.eml").write_bytes(NO_SENDER % n)
    run(desk, "process", "--account", "helpdesk", "anon-1.eml", "anon-2.eml", "anon-3.eml")
    return [int(str(row["id"])) for row in json_lines(run(desk, "quarantine", "list", "--json").stdout)]


def test_empty_outbox_and_quarantine_say_so(desk: Path) -> None:
    assert run(desk, "outbox").stdout == "the outbox is empty\n"
    assert run(desk, "quarantine", "list").stdout == "the quarantine is empty\n"
    assert run(desk, "outbox", "--json").stdout == ""  # JSON lines: no line at all
    assert run(desk, "quarantine", "list", "--json").stdout == ""


def test_history_entries_items_and_outbox_rows_show_their_timestamps(desk: Path) -> None:
    (desk / "call.eml").write_bytes(NEW_CALL)
    [result] = json_lines(run(desk, "process", "--account", "helpdesk", "--json", "call.eml").stdout)
    call = json.loads(run(desk, "show", "call", str(result["number"])).stdout)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert str(call["created_at"]).startswith(today) and str(call["updated_at"]).startswith(today)
    assert call["history"] and all(str(entry["created_at"]).startswith(today) for entry in call["history"])
    assert all(str(entry["created_at"]).endswith("+00:00") for entry in call["history"])
    [queued] = json_lines(run(desk, "outbox", "--json").stdout)
    assert str(queued["created_at"]).startswith(today)
    line = run(desk, "outbox").stdout
    assert f" queued   {today} " in line and line.rstrip().endswith(str(queued["subject"]))


def test_quarantine_list_shows_when_each_message_arrived(desk: Path) -> None:
    quarantine_three(desk)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = run(desk, "quarantine", "list").stdout.splitlines()
    assert len(lines) == 3 and all(f" held     {today} " in line for line in lines)
