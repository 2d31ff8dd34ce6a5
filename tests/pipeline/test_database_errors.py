"""A database error costs one message, never the account: only an outage leaves a message where it is.

On SQLite and PostgreSQL (``db_url``): a long Message-ID is keyed by its digest and processed; a
database error that one message causes (raised by the database itself, tests/db_faults.py)
quarantines that message while the rest of its batch is committed; a connection failure is still an
outage (``DatabaseError``: nothing of the message is kept, it stays in its mailbox).
"""

from __future__ import annotations

import secrets
import sqlite3
import string
from pathlib import Path

import pytest
from db_faults import CONSTRAINT, POISON, SEVER
from pipeline_desk import Desk
from sqlalchemy import event

from engine.pipeline import ProcessResult
from engine.storage.db import DatabaseError, batch_transaction


def random_text(length: int) -> str:
    """Letters and digits drawn at random: they do not compress, so PostgreSQL cannot fit them in an index."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def raw_mail(subject: str, message_id: str, sender: str = "ada@example.com") -> bytes:
    """A plain mail written byte for byte (a generator would fold or encode a long header)."""
    head = f"From: {sender}\nTo: helpdesk@example.com\nSubject: {subject}\nMessage-ID: <{message_id}>\n"
    return (head + "\nIt prints blank pages.\n").encode()


@pytest.fixture
def desk(faulty_desk: Desk) -> Desk:
    """The default pack on a fresh database (SQLite, then PostgreSQL) with the failing triggers."""
    return faulty_desk


def process_batch(desk: Desk, raws: list[bytes]) -> list[ProcessResult]:
    """Process messages as the service does: each in a savepoint of one batch transaction."""
    with batch_transaction(desk.runtime.engine):
        return [desk.process(raw) for raw in raws]


def test_a_message_id_of_3000_random_characters_is_keyed_by_its_digest_and_processed(desk: Desk) -> None:
    long_id = random_text(3_000) + "@example.com"
    first, again = process_batch(desk, [raw_mail("Printer broken", long_id)] * 2)
    assert (first.outcome, again.outcome) == ("logged", "duplicate")
    assert first.message_id == long_id
    assert first.key.startswith("message-id-sha256:") and len(first.key) < 100
    assert [entry["message_id"] for entry in desk.ledger()] == [long_id]


def test_a_sender_address_of_3000_random_characters_is_quarantined_naming_from(desk: Desk) -> None:
    sender = random_text(3_000) + "@example.com"
    [result] = process_batch(desk, [raw_mail("Printer broken", "s1@example.com", sender=sender)])
    assert result.outcome == "quarantined"
    assert result.reason == "From header has an address of 3,012 characters, over the limit of 512"
    assert [entry["reason"] for entry in desk.quarantine()] == [result.reason]


def test_a_database_error_one_mail_causes_quarantines_it_alone_and_the_batch_goes_on(desk: Desk) -> None:
    raws = [
        raw_mail("Printer broken", "g1@example.com"),
        raw_mail(f"Scanner {POISON}", "p1@example.com"),
        raw_mail("Monitor broken", "g2@example.com"),
    ]
    results = process_batch(desk, raws)
    assert [r.outcome for r in results] == ["logged", "quarantined", "logged"]
    reason = results[1].reason or ""
    dialect = desk.runtime.engine.dialect.name
    expected = "database error: 54000: " if dialect == "postgresql" else "database error: SQLITE_ERROR: "
    assert reason.startswith(expected), reason
    assert [entry["reason"] for entry in desk.quarantine()] == [reason]
    assert [entry["message_id"] for entry in desk.ledger()] == [
        "g1@example.com",
        "p1@example.com",
        "g2@example.com",
    ]
    if dialect == "postgresql":  # numbers are taken apart from the batch: the quarantined mail's is gone
        assert desk.call(101) is not None and desk.call(102) is None and desk.call(103) is not None
    else:
        assert desk.call(101) is not None and desk.call(102) is not None


def test_a_constraint_error_that_is_no_duplicate_quarantines_the_mail_instead_of_dropping_it(
    desk: Desk,
) -> None:
    results = process_batch(desk, [raw_mail(f"Disk {CONSTRAINT}", "c1@example.com")])
    assert results[0].outcome == "quarantined"
    assert (results[0].reason or "").startswith("database error: ")
    assert [entry["outcome"] for entry in desk.ledger()] == ["quarantined"]


@pytest.mark.parametrize("in_batch", [True, False], ids=["service batch", "deliver or process"])
def test_a_connection_failure_is_still_an_outage_and_keeps_nothing_of_the_message(
    desk: Desk, tmp_path: Path, in_batch: bool
) -> None:
    engine = desk.runtime.engine
    blocker: sqlite3.Connection | None = None
    if engine.dialect.name == "postgresql":
        outage = raw_mail(f"Printer {SEVER}", "o1@example.com")  # the server ends the connection
    else:  # another process holds the database file's lock: "database is locked"
        engine.dispose()
        event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA busy_timeout=50"))
        blocker = sqlite3.connect(tmp_path / "mailgate.sqlite", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        outage = raw_mail("Printer broken", "o1@example.com")
    try:
        with pytest.raises(DatabaseError, match="database unavailable"):
            if in_batch:
                process_batch(desk, [raw_mail("Monitor broken", "g1@example.com"), outage])
            else:
                desk.process(outage)
    finally:
        if blocker is not None:
            blocker.rollback()
            blocker.close()
    assert desk.ledger() == [] and desk.quarantine() == []  # nothing of the batch: both are retried
    retried = process_batch(desk, [raw_mail("Monitor broken", "g1@example.com")])
    assert [r.outcome for r in retried] == ["logged"]
