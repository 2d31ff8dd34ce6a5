"""Dropping what is no longer needed: ``quarantine drop|purge`` and ``outbox purge``.

Through the real console script on a real SQLite file; ages are made by moving a row's timestamp
back in that file, as time would.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_run import NEW_CALL, NO_SENDER, json_lines, run


def age_rows(desk: Path, sql: str) -> None:
    """Move rows' timestamps back in the installation's SQLite file."""
    with sqlite3.connect(desk / "mailgate.sqlite") as connection:
        connection.execute(sql)


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


def test_quarantine_drop_deletes_one_entry_and_a_missing_one_exits_1(desk: Path) -> None:
    first, second, third = quarantine_three(desk)
    dropped = run(desk, "quarantine", "drop", str(second)).stdout
    assert dropped.startswith(f"dropped quarantine entry {second} (held, helpdesk, anon-2@example.com)")
    left = [row["id"] for row in json_lines(run(desk, "quarantine", "list", "--json").stdout)]
    assert left == [first, third]
    again = run(desk, "quarantine", "drop", str(second), ok=False)
    assert again.returncode == 1 and f"no quarantine entry {second}" in again.stderr


def test_quarantine_purge_older_than_deletes_only_the_old_entries(desk: Path) -> None:
    first, second, third = quarantine_three(desk)
    age_rows(
        desk, f"UPDATE quarantineentry SET received_at = '2020-01-01 00:00:00' WHERE id IN ({first}, {third})"
    )
    purged = run(desk, "quarantine", "purge", "--older-than", "30d").stdout
    assert purged.startswith("purged 2 quarantine entries received before ")
    assert [row["id"] for row in json_lines(run(desk, "quarantine", "list", "--json").stdout)] == [second]
    assert run(desk, "quarantine", "purge", "--older-than", "30d").stdout.startswith("purged 0 ")


def test_quarantine_purge_needs_an_age_and_refuses_a_malformed_one(desk: Path) -> None:
    missing = run(desk, "quarantine", "purge", ok=False)
    assert missing.returncode == 2 and "--older-than" in missing.stderr
    wrong = run(desk, "quarantine", "purge", "--older-than", "30 days", ok=False)
    assert wrong.returncode == 2 and "'30 days': expected a number and a unit" in wrong.stderr


def test_outbox_purge_deletes_sent_messages_past_retention_and_keeps_the_rest(desk: Path) -> None:
    for n in (1, 2, 3, 4):
        (desk / f"call-{n}.eml").write_bytes(NEW_CALL.replace(b"call-1@", b"call-%d@" % n))
        run(desk, "process", "--account", "helpdesk", f"call-{n}.eml")
    ids = [row["id"] for row in json_lines(run(desk, "outbox", "--json").stdout)]
    assert len(ids) == 4
    old_sent, new_sent, old_failed, queued = ids
    age_rows(
        desk,
        f"UPDATE outboxmessage SET status = 'sent', sent_at = '2020-01-01 00:00:00' WHERE id = {old_sent}",
    )
    age_rows(
        desk, f"UPDATE outboxmessage SET status = 'sent', sent_at = CURRENT_TIMESTAMP WHERE id = {new_sent}"
    )
    age_rows(
        desk, f"UPDATE outboxmessage SET status = 'failed', created_at = '2020-01-01' WHERE id = {old_failed}"
    )
    purged = run(desk, "outbox", "purge").stdout  # the default retention: 90 days
    assert purged.startswith("purged 1 sent message sent before ")
    assert [row["id"] for row in json_lines(run(desk, "outbox", "--json").stdout)] == [
        new_sent,
        old_failed,
        queued,
    ]
    assert run(desk, "outbox", "purge", "--older-than", "90m").stdout.startswith("purged 0 sent messages")
