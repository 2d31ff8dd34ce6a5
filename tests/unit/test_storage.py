"""The database layer on SQLite and PostgreSQL: schema, numbering, ledger uniqueness, big blobs, views."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from engine.storage.db import DatabaseError, open_database, transaction
from engine.storage.models import (
    AttachedObject,
    Call,
    LedgerEntry,
    NumberSequence,
    OutboxMessage,
    QuarantineEntry,
    Request,
)
from engine.storage.numbers import next_number
from engine.storage.views import iso, ledger_view, outbox_view, quarantine_view

ALL_TABLES = {
    "person",
    "group",
    "groupmember",
    "call",
    "request",
    "task",
    "historyentry",
    "attachedobject",
    "forward",
    "outboxmessage",
    "ledgerentry",
    "quarantineentry",
    "numbersequence",
}


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


# --- schema ---------------------------------------------------------------------------------------


def test_open_database_creates_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= ALL_TABLES


def test_opening_an_existing_database_again_keeps_its_rows(db_url: str) -> None:
    first = open_database(db_url)
    with transaction(first) as session:
        session.add(Call(number=7))
    first.dispose()
    second = open_database(db_url)
    with Session(second) as session:
        assert [call.number for call in session.exec(select(Call))] == [7]
    second.dispose()


def test_a_junk_database_url_is_a_database_error() -> None:
    with pytest.raises(DatabaseError, match="invalid database URL"):
        open_database("not a url at all")


# --- numbering ------------------------------------------------------------------------------------


def test_first_number_of_an_empty_table_is_1(engine: Engine) -> None:
    with transaction(engine) as session:
        assert next_number(session, "call") == 1


def test_next_call_number_follows_the_highest_loaded_call(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Call(number=41))
    with transaction(engine) as session:
        assert next_number(session, "call") == 42


def test_next_number_skips_past_a_call_loaded_above_the_sequence(engine: Engine) -> None:
    with transaction(engine) as session:
        assert next_number(session, "call") == 1
    with transaction(engine) as session:
        session.add(Call(number=41))
    with transaction(engine) as session:
        assert next_number(session, "call") == 42


def test_two_reservations_in_one_transaction_get_different_numbers(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Call(number=41))
    with transaction(engine) as session:
        first = next_number(session, "call")
        second = next_number(session, "call")
    assert (first, second) == (42, 43)


def test_a_committed_reservation_is_consumed_even_without_a_call(engine: Engine) -> None:
    with transaction(engine) as session:
        assert next_number(session, "call") == 1
    with transaction(engine) as session:
        assert next_number(session, "call") == 2


def test_a_rolled_back_reservation_is_handed_out_again_on_sqlite_and_left_as_a_gap_on_postgresql(
    engine: Engine,
) -> None:
    """Decision: on SQLite (one process) the reservation lives in the caller's transaction, so a
    rollback returns the number; on PostgreSQL it is committed at once, so other processes never
    wait for the caller's transaction, and a rollback leaves a gap."""
    with transaction(engine) as session:
        session.add(Call(number=41))
    with pytest.raises(Boom), transaction(engine) as session:
        reserved = next_number(session, "call")
        session.add(Call(number=reserved))
        raise Boom
    with transaction(engine) as session:
        expected = 43 if engine.dialect.name == "postgresql" else 42
        assert next_number(session, "call") == expected
        assert session.exec(select(Call.number)).all() == [41]


def test_on_postgresql_a_transaction_holding_a_new_number_does_not_make_another_wait(pg_url: str) -> None:
    engine = open_database(pg_url)
    try:
        with transaction(engine) as holder:
            first = next_number(holder, "call")
            holder.add(Call(number=first))
            holder.flush()
            with Session(engine) as other:  # another process's batch, while the first is open
                other.connection().exec_driver_sql("SET lock_timeout = '2s'")
                second = next_number(other, "call")
                other.commit()
        assert (first, second) == (1, 2)
    finally:
        engine.dispose()


def test_on_postgresql_taking_a_number_does_not_wait_for_the_disk(pg_url: str) -> None:
    """Each number is committed on its own; a flush of the log per new call would pace every process.

    Right after a number was taken, its commit is still in the log's buffer (the server's log
    writer flushes it within ``wal_writer_delay``), unless the commit waited for the flush.
    """
    engine = open_database(pg_url)
    unflushed = text("SELECT pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn()")
    try:
        with engine.connect() as watcher:
            seen = []
            for _ in range(10):
                with transaction(engine) as session:
                    next_number(session, "call")
                seen.append(watcher.execute(unflushed).scalar_one())
                watcher.rollback()
        assert any(seen), "every number's commit had waited for the log to reach the disk"
    finally:
        engine.dispose()


def test_calls_requests_and_tasks_are_numbered_independently(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Call(number=41))
        session.add(Request(number=5))
    with transaction(engine) as session:
        assert (next_number(session, "call"), next_number(session, "request")) == (42, 6)
        assert next_number(session, "task") == 1
    with Session(engine) as session:
        names = sorted(seq.name for seq in session.exec(select(NumberSequence)))
    assert names == ["call", "request", "task"]


# --- ledger ---------------------------------------------------------------------------------------


def test_the_same_message_key_twice_in_one_account_is_refused(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(LedgerEntry(account="helpdesk", message_key="<a@x>", outcome="logged"))
    with pytest.raises(IntegrityError), transaction(engine) as session:
        session.add(LedgerEntry(account="helpdesk", message_key="<a@x>", outcome="logged"))
    with Session(engine) as session:
        assert len(session.exec(select(LedgerEntry)).all()) == 1


def test_the_same_message_key_in_another_account_is_allowed(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(LedgerEntry(account="helpdesk", message_key="<a@x>", outcome="logged"))
    with transaction(engine) as session:
        session.add(LedgerEntry(account="hr", message_key="<a@x>", outcome="logged"))
    with Session(engine) as session:
        accounts = sorted(entry.account for entry in session.exec(select(LedgerEntry)))
    assert accounts == ["helpdesk", "hr"]


# --- large binaries -------------------------------------------------------------------------------


def test_a_25_megabyte_attachment_round_trips(engine: Engine) -> None:
    block = hashlib.sha256(b"mailgate").digest() * 32  # 1 KiB of non-repeating-looking bytes
    data = bytes(range(256)) + block * (25 * 1024) + b"\x00tail\xff"
    digest = hashlib.sha256(data).hexdigest()
    with transaction(engine) as session:
        session.add(
            AttachedObject(
                entity="call", entity_id=1, filename="big.bin", size=len(data), sha256=digest, data=data
            )
        )
    with Session(engine) as session:
        stored = session.exec(select(AttachedObject)).one()
        assert len(stored.data) > 25 * 1024 * 1024
        assert stored.size == len(data)
        assert hashlib.sha256(stored.data).hexdigest() == digest
        assert stored.data == data


# --- views of the mail bookkeeping ---------------------------------------------------------------


def test_outbox_view_lists_messages_in_id_order_with_every_field(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(
            OutboxMessage(
                type="reply",
                account="helpdesk",
                to_address="ann@example.com",
                subject="Call 42 logged",
                body="Thank you",
                message_id="<1@mailgate>",
                in_reply_to="<orig@example.com>",
                references="<orig@example.com>",
                entity="call",
                number=42,
            )
        )
        session.add(
            OutboxMessage(type="summary", to_address="boss@example.com", subject="Daily", message_id="<2@m>")
        )
    with Session(engine) as session:
        view = outbox_view(session)
    json.dumps(view)
    assert [message["message_id"] for message in view] == ["<1@mailgate>", "<2@m>"]
    first = view[0]
    assert first == {
        "id": first["id"],
        "type": "reply",
        "to": "ann@example.com",
        "subject": "Call 42 logged",
        "body": "Thank you",
        "message_id": "<1@mailgate>",
        "in_reply_to": "<orig@example.com>",
        "references": "<orig@example.com>",
        "headers": {},
        "status": "queued",
        "entity": "call",
        "number": 42,
        "account": "helpdesk",
        "created_at": first["created_at"],
        "attempts": 0,
        "next_attempt_at": None,
        "sent_at": None,
        "sent_via": None,
        "server_reply": None,
        "last_error": None,
    }
    assert view[1]["account"] is None and view[1]["number"] is None


def test_ledger_view_filters_by_account_and_decodes_detail(engine: Engine) -> None:
    moment = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    with transaction(engine) as session:
        session.add(
            LedgerEntry(
                account="helpdesk",
                message_key="k1",
                message_id="<a@x>",
                outcome="logged",
                rule="new-call",
                entity="call",
                number=42,
                detail='{"subject": "Printer"}',
                processed_at=moment,
            )
        )
        session.add(LedgerEntry(account="hr", message_key="k1", outcome="ignored"))
    with Session(engine) as session:
        everything = ledger_view(session)
        helpdesk = ledger_view(session, "helpdesk")
    json.dumps(everything)
    assert [entry["account"] for entry in everything] == ["helpdesk", "hr"]
    assert helpdesk == [
        {
            "id": helpdesk[0]["id"],
            "account": "helpdesk",
            "message_key": "k1",
            "message_id": "<a@x>",
            "outcome": "logged",
            "rule": "new-call",
            "entity": "call",
            "number": 42,
            "detail": {"subject": "Printer"},
            "processed_at": "2024-05-01T09:30:00+00:00",
        }
    ]


def test_quarantine_view_gives_size_of_raw_and_iso_time(engine: Engine) -> None:
    raw = b"From: x\r\n\r\n\x00\xff" * 1000
    moment = datetime(2024, 5, 1, 9, 30, 15, tzinfo=UTC)
    with transaction(engine) as session:
        session.add(
            QuarantineEntry(
                account="helpdesk",
                message_key="k9",
                origin="/var/mail/in/9.eml",
                reason="not a MIME message",
                raw=raw,
                received_at=moment,
            )
        )
    with Session(engine) as session:
        view = quarantine_view(session)
    json.dumps(view)
    assert view == [
        {
            "id": view[0]["id"],
            "account": "helpdesk",
            "message_key": "k9",
            "origin": "/var/mail/in/9.eml",
            "reason": "not a MIME message",
            "status": "held",
            "received_at": "2024-05-01T09:30:15+00:00",
            "size": len(raw),
        }
    ]


def test_iso_treats_zoneless_timestamps_as_utc() -> None:
    assert iso(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05+00:00"
    assert iso(None) is None


def test_the_sender_is_found_through_the_lower_email_index_not_a_table_scan(sqlite_url: str) -> None:
    from engine.rules.gather import _SENDER_BY_ADDRESS

    opened = open_database(sqlite_url)
    try:
        compiled = _SENDER_BY_ADDRESS.compile(dialect=opened.dialect)
        params = {name: "ada@example.com" if name == "address" else 1 for name in compiled.params}
        with opened.connect() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled.string}", tuple(params[n] for n in compiled.positiontup or ())
            ).all()
    finally:
        opened.dispose()
    assert any("ix_person_email_lower" in str(row) for row in plan), plan


def test_in_a_batch_a_failed_message_undoes_its_own_work_only_and_the_others_are_committed(
    engine: Engine,
) -> None:
    from engine.storage.db import batch_transaction

    with batch_transaction(engine):
        for number in (1, 2, 3):
            try:
                with transaction(engine) as session:
                    session.add(Request(number=number, status="open"))
                    session.flush()
                    if number == 2:
                        raise RuntimeError("this message fails after writing")
            except RuntimeError:
                pass
        with transaction(engine) as session:  # the batch goes on in the same transaction
            session.add(Request(number=4, status="open"))
    with Session(engine) as session:
        assert sorted(r.number for r in session.exec(select(Request))) == [1, 3, 4]
