"""A database at the first schema (r1), full of what mailgate 0.1.0 wrote, upgraded to head in place.

The starting databases are made two ways, on SQLite and on PostgreSQL: by running the revisions up
to r1, and by mailgate 0.1.0's own code (commit 0bdbdc9's models, no version table). They are filled
with the rows 0bdbdc9's code wrote (calls, history, attachments, outbox, ledger, quarantine, …),
upgraded, and then used by today's code: every row is still there, mail processed before the
upgrade is still a duplicate, and new mail is handled with the numbers following on.

A later revision that transforms r1's data on purpose updates ``expected_after_upgrade`` below.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from migration_helpers import (
    DEMO_MAILBOX,
    SCHEMA_FIXTURES,
    Rows,
    create_as_0bdbdc9,
    desk_runtime,
    load_r1_rows,
    migrate_to,
    recorded_revision,
)
from schema_rows import decoded, reflect
from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.pipeline import process_message
from engine.storage.db import create_database_engine, transaction
from engine.storage.migrate import upgrade_database
from engine.storage.schema import FIRST_REVISION, head_revision
from engine.storage.views import call_view, quarantine_view

ORIGINS = ["migrations", "0bdbdc9-code"]

NEW_CALL = (
    b"From: Ada Lovelace <ada@example.com>\r\nTo: helpdesk@example.com\r\n"
    b"Subject: The scanner is offline\r\nMessage-ID: <after-upgrade-1@example.com>\r\n"
    b"Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n\r\nIt shows no network.\r\n"
)
UPDATE_103 = (
    b"From: Ada Lovelace <ada@example.com>\r\nTo: helpdesk@example.com\r\n"
    b"Subject: RE: [CALL#103] still crashing\r\nMessage-ID: <after-upgrade-2@example.com>\r\n"
    b"Date: Tue, 24 Nov 2026 09:05:00 +0000\r\n\r\nStill crashing after the update.\r\n"
)
# every mail 0bdbdc9's code processed into r1_rows.json (see make_r1_rows.sh)
PROCESSED_BEFORE = [
    *sorted(DEMO_MAILBOX.glob("0[1-7]-*.eml")),  # 0.1.0's demo mailbox (08 came later)
    SCHEMA_FIXTURES / "mail" / "attachments-update.eml",
    SCHEMA_FIXTURES / "mail" / "no-sender.eml",
]


def build_upgraded_database(url: str, origin: str, rows: Rows) -> None:
    """An r1 database at ``url`` made the ``origin`` way, holding 0bdbdc9's rows, then upgraded."""
    if origin == "migrations":
        migrate_to(url, FIRST_REVISION)
    else:
        create_as_0bdbdc9(url)
    load_r1_rows(url, rows)
    report = upgrade_database(url)
    assert report.before == FIRST_REVISION
    assert report.adopted is (origin == "0bdbdc9-code"), "only the unversioned database is recognised"
    assert report.after == head_revision() == recorded_revision(url)


def comparable(value: Any) -> Any:
    """A stored value as the dump holds it: timestamps naive UTC, binary as bytes."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def stored_rows(engine: Engine, table_name: str) -> tuple[list[str], dict[tuple[Any, ...], dict[str, Any]]]:
    """The names of a table's primary key, and its rows now by primary key."""
    with engine.connect() as connection:
        table = reflect(connection).tables[table_name]
        key = [column.name for column in table.primary_key.columns]
        rows = connection.execute(select(table)).mappings()
        return key, {tuple(row[k] for k in key): {k: comparable(v) for k, v in row.items()} for row in rows}


def expected_after_upgrade(table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """What an r1 row holds after the upgrade (no revision transforms r1's data yet)."""
    return decoded(row)


@pytest.mark.parametrize("origin", ORIGINS)
def test_an_r1_database_full_of_0bdbdc9_data_is_upgraded_with_every_row_intact(
    db_url: str, origin: str, r1_rows: Rows
) -> None:
    build_upgraded_database(db_url, origin, r1_rows)
    engine = create_database_engine(db_url)
    try:
        for table_name, rows in r1_rows.items():
            key, now = stored_rows(engine, table_name)
            assert len(now) == len(rows), f"{table_name}: {len(now)} rows, {len(rows)} before"
            for row in rows:
                expected = expected_after_upgrade(table_name, row)
                stored = now[tuple(expected[k] for k in key)]
                for column, value in expected.items():
                    assert stored[column] == value, f"{table_name}.{column} of {key} changed"
    finally:
        engine.dispose()
    assert {"call", "historyentry", "attachedobject", "outboxmessage", "ledgerentry", "quarantineentry"} <= {
        name for name, rows in r1_rows.items() if rows
    }, "the starting data covers every kind of row"


@pytest.mark.parametrize("origin", ORIGINS)
def test_after_the_upgrade_mail_processed_before_is_a_duplicate_and_new_mail_is_handled(
    db_url: str, origin: str, r1_rows: Rows, tmp_path: Path
) -> None:
    build_upgraded_database(db_url, origin, r1_rows)
    runtime = desk_runtime(db_url, tmp_path)
    try:
        account = runtime.config.accounts[0]
        for path in PROCESSED_BEFORE:
            result = process_message(runtime, account, path.read_bytes(), path.name)
            assert result.outcome == "duplicate", f"{path.name} was processed before the upgrade"

        logged = process_message(runtime, account, NEW_CALL, "new.eml")
        assert (logged.outcome, logged.entity, logged.number) == ("logged", "call", 104)
        updated = process_message(runtime, account, UPDATE_103, "update.eml")
        assert (updated.outcome, updated.number) == ("updated", 103)

        with transaction(runtime.engine) as session:
            call = call_view(session, 103)
            held = quarantine_view(session)
        assert call is not None
        assert [a["filename"] for a in call["attachments"]] == ["crash-1.png", "outlook.log"]
        assert [h["kind"] for h in call["history"]][-1] == "email_update"
        assert len(call["history"]) == 5, "the four entries from before the upgrade, and the new one"
        assert [(q["message_key"], q["status"]) for q in held] == [("r1-no-sender@example.com", "held")]
    finally:
        runtime.close()


def test_attachment_bytes_survive_the_upgrade(sqlite_url: str, r1_rows: Rows) -> None:
    build_upgraded_database(sqlite_url, "0bdbdc9-code", r1_rows)
    engine = create_database_engine(sqlite_url)
    try:
        _, attachments = stored_rows(engine, "attachedobject")
    finally:
        engine.dispose()
    for attachment in attachments.values():
        assert hashlib.sha256(attachment["data"]).hexdigest() == attachment["sha256"]
        assert len(attachment["data"]) == attachment["size"]
