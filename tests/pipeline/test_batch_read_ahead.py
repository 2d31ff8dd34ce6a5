"""What a service batch reads ahead (its ledger keys, its senders) answers as the database would.

On both databases the batch asks for all its keys, senders and their recent automatic replies at
once (engine.storage.ledger.look_up_ahead, engine.storage.queries.look_up_senders, engine.outgoing.
outbox.look_up_recent_replies): on PostgreSQL that saves round trips, on SQLite a statement per
message each. On PostgreSQL it also reads the items its subjects name (engine.rules.gather.
look_up_targets). Either way, a sender first seen
in the batch is known to its next message, the replies the batch queues count against the rate
limit, and a message whose writes are rolled back leaves nothing the next one believes in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from db_faults import POISON
from pipeline_desk import Desk, build_desk, make_mail
from sqlalchemy import event, func
from sqlmodel import col, select

from engine.mail.message import parse_message
from engine.outgoing.outbox import look_up_our_messages, look_up_recent_replies
from engine.pipeline import ProcessResult
from engine.rules.gather import is_reply_to_us, look_up_targets
from engine.rules.subject import parse_subject
from engine.storage.db import batch_transaction, transaction
from engine.storage.ledger import look_up_ahead
from engine.storage.models import Person, utcnow
from engine.storage.queries import look_up_senders


@pytest.fixture
def desk(faulty_desk: Desk) -> Desk:
    """The default pack on a fresh database (SQLite, then PostgreSQL) with the failing triggers."""
    return faulty_desk


def process_batch_as_the_service(desk: Desk, raws: list[bytes]) -> list[ProcessResult]:
    """One batch, its keys and senders read ahead first, as the service does."""
    with batch_transaction(desk.runtime.engine):
        messages = [parse_message(raw) for raw in raws]
        look_up_ahead("helpdesk", [message.key for message in messages])
        look_up_senders(message.from_address for message in messages)
        look_up_recent_replies([message.from_address for message in messages], utcnow())
        keywords = desk.runtime.pack_for(desk.runtime.config.accounts[0]).keywords
        look_up_targets(parse_subject(message.subject, keywords) for message in messages)
        return [desk.process(raw) for raw in raws]


def people_named(desk: Desk, email: str) -> list[int]:
    """The ids of the people with this address, in any case."""
    with transaction(desk.runtime.engine) as session:
        return list(session.exec(select(Person.id).where(func.lower(col(Person.email)) == email.lower())))


def test_a_sender_first_seen_in_a_batch_is_known_to_its_next_message(desk: Desk) -> None:
    raws = [
        make_mail("Printer broken", "Newcomer@example.com", message_id="<a1@example.com>"),
        make_mail("Screen broken", "newcomer@example.com", message_id="<a2@example.com>"),
    ]
    results = process_batch_as_the_service(desk, raws)
    assert [r.outcome for r in results] == ["logged", "logged"]
    assert len(people_named(desk, "newcomer@example.com")) == 1  # the second found the first's person


def test_a_rolled_back_message_leaves_no_sender_or_ledger_key_the_next_one_believes_in(desk: Desk) -> None:
    raws = [
        make_mail(f"Scanner {POISON}", "stranger@example.com", message_id="<p1@example.com>"),
        make_mail("Scanner broken", "stranger@example.com", message_id="<p2@example.com>"),
        make_mail(f"Scanner {POISON}", "stranger@example.com", message_id="<p1@example.com>"),
    ]
    results = process_batch_as_the_service(desk, raws)
    assert [r.outcome for r in results] == ["quarantined", "logged", "duplicate"]
    assert len(people_named(desk, "stranger@example.com")) == 1  # made by the second message
    assert [entry["message_id"] for entry in desk.ledger()] == ["p1@example.com", "p2@example.com"]


def test_the_replies_a_batch_queues_count_against_the_rate_limit_and_a_rolled_back_one_does_not(
    desk: Desk,
) -> None:
    raws = [
        make_mail(f"Printer {n}", f"ann+{n}@example.com", message_id=f"<r{n}@example.com>") for n in range(9)
    ]
    raws.append(make_mail(f"Scanner {POISON}", "ann@example.com", message_id="<poison@example.com>"))
    raws += [make_mail(f"Mouse {n}", "Ann@example.com", message_id=f"<s{n}@example.com>") for n in range(2)]
    results = process_batch_as_the_service(desk, raws)
    assert [r.outcome for r in results] == ["logged"] * 9 + ["quarantined"] + ["logged"] * 2
    assert [len(r.replies) for r in results] == [1] * 9 + [0] + [1, 0]  # at most 10 an hour
    assert len(desk.outbox()) == 10  # the quarantined mail's reply was rolled back with it


def test_a_mail_answering_one_of_our_messages_is_known_as_a_reply_to_us_in_a_batch(desk: Desk) -> None:
    process_batch_as_the_service(desk, [make_mail("Printer broken", message_id="<q1@example.com>")])
    [ours] = [entry["message_id"] for entry in desk.outbox()]
    answers = [
        f"In-Reply-To: <{ours}>\n".encode() + make_mail("Thanks", message_id="<q2@example.com>"),
        b"In-Reply-To: <elsewhere@example.com>\n" + make_mail("Thanks", message_id="<q3@example.com>"),
    ]
    with batch_transaction(desk.runtime.engine):
        messages = [parse_message(raw) for raw in answers]
        look_up_our_messages(i for m in messages for i in (*m.in_reply_to, *m.references))
        with transaction(desk.runtime.engine) as session:
            assert [is_reply_to_us(session, m) for m in messages] == [True, False]


def test_on_sqlite_a_batch_reads_its_senders_ledger_keys_and_replies_once_not_per_message(
    tmp_path: Path,
) -> None:
    built = build_desk(tmp_path)
    statements: list[str] = []

    @event.listens_for(built.runtime.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    built.runtime.engine.dispose()  # new connections, traced
    raws = [make_mail(f"Printer {n}", "ada@example.com", message_id=f"<b{n}@example.com>") for n in range(5)]
    try:
        results = process_batch_as_the_service(built, raws)
    finally:
        built.runtime.close()

    assert [r.outcome for r in results] == ["logged"] * 5
    people = [s for s in statements if s.startswith("SELECT person.id") and "lower(person.email)" in s]
    ledger = [s for s in statements if s.startswith("SELECT ledgerentry.") and "message_key" in s]
    replies = [s for s in statements if "FROM outboxmessage" in s and "answered_address" in s]
    assert (len(people), len(ledger), len(replies)) == (1, 1, 1), statements


ONE_CALL_CHANGED_THEN_NAMED_AGAIN = [
    make_mail("[CALL#100] the toner is out", "ada@example.com", message_id="<t1@example.com>"),
    make_mail("[CLOSE#100]", "ada@example.com", message_id="<t2@example.com>"),
    make_mail("[CALL#100] it broke again", "ada@example.com", message_id="<t3@example.com>"),
    make_mail("[CLOSE#100]", "ada@example.com", message_id="<t4@example.com>"),
]


def test_an_item_read_ahead_and_changed_by_a_message_is_seen_changed_by_the_next(desk: Desk) -> None:
    """The outcomes mails get one by one (the call closed by the second, so the rest are refused)."""
    results = process_batch_as_the_service(desk, ONE_CALL_CHANGED_THEN_NAMED_AGAIN)
    assert [r.outcome for r in results] == ["updated", "closed", "refused", "refused"]


def test_an_item_logged_earlier_in_the_batch_is_found_by_a_later_message_naming_it(desk: Desk) -> None:
    first = make_mail("Printer broken", "ada@example.com", message_id="<n1@example.com>")
    results = process_batch_as_the_service(desk, [first])
    logged = results[0].number
    assert logged is not None
    raws = [
        make_mail("Scanner broken", "ada@example.com", message_id="<n2@example.com>"),
        make_mail(f"[CALL#{logged + 1}] and the scanner", "ada@example.com", message_id="<n3@example.com>"),
    ]
    results = process_batch_as_the_service(desk, raws)
    assert [(r.outcome, r.number) for r in results] == [("logged", logged + 1), ("updated", logged + 1)]
