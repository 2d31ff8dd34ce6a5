"""An optimistic batch on PostgreSQL holds its writes back and sends each table's rows in one statement.

(engine.storage.deferred.) Counted on the wire: the database is reached through a TCP proxy
(tests/servers/tcp_proxy.py) that counts the statements the client asks the server to run. And
checked for what it must not change: the rows written, a failed message's rollback (its own
rows only), a read seeing the writes before it, foreign keys and an UPDATE of a row held with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_desk import Desk, build_desk, make_mail
from servers.tcp_proxy import TcpProxy
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from engine.mail.message import parse_message
from engine.outgoing.outbox import look_up_recent_replies
from engine.storage.db import BatchNotSettled, batch_transaction, open_database, transaction
from engine.storage.direct import insert_row, pipelined_batch, run_statement
from engine.storage.items import ItemStore
from engine.storage.ledger import look_up_ahead
from engine.storage.models import Call, Person, utcnow
from engine.storage.queries import look_up_senders

pytestmark = pytest.mark.postgres


class OwnFailure(Exception):
    """A message's own failure (an action that raised), not the database's."""


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test PostgreSQL server, counting the statements sent through it."""
    server = TcpProxy("127.0.0.1", 5432, postgres=True)
    yield server
    server.close()


def _through(url: str, proxy: TcpProxy) -> str:
    parsed = make_url(url)
    proxy.target = (parsed.host or "127.0.0.1", parsed.port or 5432)
    through = parsed.set(host="127.0.0.1", port=proxy.port).update_query_dict({"sslmode": "disable"})
    return through.render_as_string(hide_password=False)


@pytest.fixture
def desk(tmp_path: Path, pg_url: str, proxy: TcpProxy) -> Iterator[Desk]:
    """The default pack on a fresh PostgreSQL database, reached through the proxy."""
    built = build_desk(tmp_path, database=_through(pg_url, proxy))
    yield built
    built.runtime.close()


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    """A fresh PostgreSQL database, opened."""
    opened = open_database(pg_url)
    yield opened
    opened.dispose()


def _new_calls(count: int, tag: str) -> list[bytes]:
    return [
        make_mail(f"Printer {n} broken", f"user{n}@example.com", message_id=f"<{tag}{n}@example.com>")
        for n in range(count)
    ]


def test_an_optimistic_batch_sends_each_tables_new_rows_in_one_statement(desk: Desk, proxy: TcpProxy) -> None:
    raws = _new_calls(10, "s")
    with batch_transaction(desk.runtime.engine, optimistic=True):
        desk.process(make_mail("Warm up", message_id="<w0@example.com>"))  # secrets, ids, numbers
        _read_ahead(raws)  # as the service does
        before = proxy.statements
        outcomes = [desk.process(raw).outcome for raw in raws]
        during = proxy.statements - before
    sent = proxy.statements - before
    assert outcomes == ["logged"] * 10
    # ten new senders, calls, history entries, replies, ledger entries, originals: sixty rows in
    # six statements; the rest are the reads of each message the batch could not read ahead
    assert sent <= 6 + 2 * 10, f"{sent} statements for ten new calls ({during} before the commit)"
    assert len([c for c in desk.ledger() if c["outcome"] == "logged"]) == 11


def _read_ahead(raws: list[bytes]) -> None:
    messages = [parse_message(raw) for raw in raws]
    look_up_ahead("helpdesk", [m.key for m in messages])
    look_up_senders([m.from_address for m in messages])
    look_up_recent_replies([m.from_address for m in messages], utcnow())


def test_rows_sent_together_are_the_rows_sent_one_by_one(
    tmp_path: Path, pg_url: str, pg_admin_engine: Engine
) -> None:
    raws = [
        *_new_calls(4, "r"),
        b"In-Reply-To: <earlier@example.com>\n"
        + make_mail("RE: [CALL#100] still broken", "ada@example.com", message_id="<u1@example.com>"),
        make_mail("Mouse broken", "ada@example.com", message_id="<k2@example.com>"),
    ]
    other = f"{make_url(pg_url).database}_b"
    with pg_admin_engine.connect() as admin:
        admin.execute(text(f'CREATE DATABASE "{other}"'))
    tables: list[dict[str, list[tuple[Any, ...]]]] = []
    try:
        for optimistic, url in ((True, pg_url), (False, make_url(pg_url).set(database=other))):
            shown = url if isinstance(url, str) else url.render_as_string(hide_password=False)
            (tmp_path / str(optimistic)).mkdir()
            desk = build_desk(tmp_path / str(optimistic), database=shown)
            try:
                with batch_transaction(desk.runtime.engine, optimistic=optimistic):
                    outcomes = [desk.process(raw).outcome for raw in raws]
                assert outcomes == ["logged"] * 4 + ["updated", "logged"]
                tables.append(_contents(desk.runtime.engine))
            finally:
                desk.runtime.close()
    finally:
        with pg_admin_engine.connect() as admin:
            admin.execute(text(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)'))
    held, one_by_one = tables
    assert held["call"] and held["historyentry"] and held["originalmessage"]
    assert held == one_by_one


# the columns compared: everything but ids and times (which differ from run to run)
_COMPARED = {
    "call": "number, status, summary, description, user_id, updated_by_email, account",
    "historyentry": "entity, kind, text, security_profile, sender_authentication, message_id",
    "ledgerentry": "message_key, message_id, outcome, rule, entity, number, fingerprint, sender, subject",
    "originalmessage": "message_key, message_id, size, compression, data",
    "outboxmessage": "type, to_address, subject, status, entity, number, auto_submitted, answered_address",
    "person": "email, name, is_user, is_analyst, take_over",
}


def _contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            name: sorted(
                (tuple(row) for row in connection.execute(text(f'SELECT {columns} FROM "{name}"'))),
                key=repr,
            )
            for name, columns in _COMPARED.items()
        }


def _person(n: int) -> dict[str, Any]:
    return {"email": f"p{n}@example.com", "name": f"P{n}", "is_user": True, "is_analyst": False} | {
        "take_over": False
    }


def _emails(engine: Engine) -> list[str]:
    with transaction(engine) as session:
        return sorted(session.exec(select(Person.email)).scalars())  # type: ignore[call-overload]


def _second_of_three_fails(engine: Engine, work: Callable[[Session], None]) -> None:
    """Three messages in an optimistic batch, each adding a person; the second does ``work`` and fails."""
    with batch_transaction(engine, optimistic=True):
        with transaction(engine) as session:
            insert_row(session, Person, _person(1))
        with pytest.raises(OwnFailure), transaction(engine) as session:
            insert_row(session, Person, _person(2))
            work(session)
            raise OwnFailure
        with transaction(engine) as session:
            insert_row(session, Person, _person(3))


def test_a_failed_message_of_an_optimistic_batch_loses_only_its_own_held_rows(engine: Engine) -> None:
    def nothing_sent(session: Session) -> None:
        batch = pipelined_batch()
        assert batch is not None and batch.deferred is not None and len(batch.deferred.held) == 2

    _second_of_three_fails(engine, nothing_sent)
    assert _emails(engine) == ["p1@example.com", "p3@example.com"]


_RENAME = update(Person).where(Person.email == "p1@example.com").values(name="renamed")  # not held


def test_a_failed_message_whose_savepoint_was_sent_rolls_back_its_own_work_alone(engine: Engine) -> None:
    def sent_and_held_again(session: Session) -> None:
        run_statement(session, _RENAME, {})  # sends what is held, and this message's savepoint
        insert_row(session, Person, _person(4))  # held again after it

    _second_of_three_fails(engine, sent_and_held_again)
    assert _emails(engine) == ["p1@example.com", "p3@example.com"]
    with transaction(engine) as session:
        assert session.exec(select(Person.name).where(Person.email == "p1@example.com")).one()[0] == "P1"


_EMAILS = select(Person.email).order_by(Person.email)


def test_a_read_in_an_optimistic_batch_sees_the_rows_held_before_it(engine: Engine) -> None:
    with batch_transaction(engine, optimistic=True):
        with transaction(engine) as session:
            insert_row(session, Person, _person(1))
        with transaction(engine) as session:
            insert_row(session, Person, _person(2))
            seen = [row[0] for row in run_statement(session, _EMAILS).rows]
    assert seen == ["p1@example.com", "p2@example.com"]


def _call(number: int) -> dict[str, Any]:
    now = utcnow()
    return {
        "number": number,
        "status": "open",
        "summary": "s",
        "description": "",
        "updated_by_email": False,
        "created_at": now,
        "updated_at": now,
    }


def test_new_calls_and_their_new_people_held_together_keep_the_foreign_key(engine: Engine) -> None:
    people = []
    with batch_transaction(engine, optimistic=True):
        for n in (1, 2):
            with transaction(engine) as session:
                people.append(insert_row(session, Person, _person(n)))
                insert_row(session, Call, {**_call(n), "user_id": people[-1]})
        batch = pipelined_batch()
        assert batch is not None and batch.deferred is not None and len(batch.deferred.held) == 4
    with transaction(engine) as session:
        rows = session.exec(select(Call.number, Call.user_id).order_by(Call.number)).all()
    assert [tuple(row) for row in rows] == [(1, people[0]), (2, people[1])]


def test_an_update_held_with_the_insert_of_its_row_finds_the_row(engine: Engine) -> None:
    with batch_transaction(engine, optimistic=True), transaction(engine) as session:
        store = ItemStore(session)
        insert_row(session, Call, _call(8))
        call = session.exec(select(Call).where(Call.number == 8)).one()[0]  # the ORM's read: sent first
        store.set_columns(call, status="closed")
        batch = pipelined_batch()
        assert batch is not None and batch.deferred is not None and len(batch.deferred.held) == 1
        insert_row(session, Call, _call(9))
    with transaction(engine) as session:
        rows = session.exec(select(Call.number, Call.status).order_by(Call.number)).all()
    assert [tuple(row) for row in rows] == [(8, "closed"), (9, "open")]


_INSERT_CALL = insert(Call)


def test_a_held_row_that_breaks_a_constraint_fails_the_optimistic_batch_whole(engine: Engine) -> None:
    with pytest.raises(BatchNotSettled), batch_transaction(engine, optimistic=True):
        with transaction(engine) as session:
            insert_row(session, Person, _person(1))
        with transaction(engine) as session:
            run_statement(session, _INSERT_CALL, {**_call(1), "number": None})
    assert _emails(engine) == []
