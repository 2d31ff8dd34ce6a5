"""Statements run on the driver (engine/storage/direct.py) and group commit, on SQLite and PostgreSQL.

What ``run_statement`` returns and writes must be what SQLAlchemy itself would return and write for
the same statement; ``batch_transaction`` must keep each message's savepoint apart and commit once.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, create_engine, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from sqlmodel import select as sqlmodel_select

from engine.storage.db import DatabaseError, batch_transaction, transaction
from engine.storage.direct import insert_row, run_statement
from engine.storage.models import LedgerEntry, OutboxMessage, Person

_PERSON_BY_ID = select(col(Person.id), col(Person.email), col(Person.is_analyst)).where(
    col(Person.id) == bindparam("id")
)
_LEDGER_BY_KEY = select(col(LedgerEntry.processed_at), col(LedgerEntry.number)).where(
    col(LedgerEntry.message_key) == bindparam("key")
)
_INSERT_LEDGER = insert(LedgerEntry)
_OUTBOX_IDS_IN = select(func.count()).where(
    col(OutboxMessage.message_id).in_(bindparam("ids", expanding=True))
)
_PEOPLE_LIMITED = select(col(Person.email)).order_by(col(Person.id)).limit(2)


def _ledger(key: str, when: datetime, number: int = 7) -> dict[str, object]:
    return {
        "account": "helpdesk",
        "message_key": key,
        "message_id": key,
        "outcome": "logged",
        "rule": "r",
        "entity": "call",
        "number": number,
        "detail": "{}",
        "processed_at": when,
    }


def _person(email: str, analyst: bool = False) -> dict[str, object]:
    return {"email": email, "name": email, "is_user": True, "is_analyst": analyst, "take_over": False}


def test_rows_come_back_converted_as_sqlalchemy_converts_them(engine: Engine) -> None:
    when = datetime(2026, 3, 2, 8, 30, 15, 123456, tzinfo=UTC)
    with transaction(engine) as session:
        new_id = insert_row(session, Person, _person("ada@example.com", analyst=True))
        run_statement(session, _INSERT_LEDGER, _ledger("k1", when))
    with transaction(engine) as session:
        row = run_statement(session, _PERSON_BY_ID, {"id": new_id}).first()
        direct = run_statement(session, _LEDGER_BY_KEY, {"key": "k1"}).first()
        by_sqlalchemy = session.connection().execute(_LEDGER_BY_KEY, {"key": "k1"}).first()
    assert (row.id, row.email, row.is_analyst) == (new_id, "ada@example.com", True)
    assert row.is_analyst is True  # a bool, not SQLite's 1
    assert direct is not None and by_sqlalchemy is not None
    assert tuple(direct) == tuple(by_sqlalchemy) == (when, 7)
    assert isinstance(direct.processed_at, datetime)


def test_a_value_written_directly_reads_back_through_the_orm_unchanged(engine: Engine) -> None:
    when = datetime(2026, 1, 31, 23, 59, 59, 1, tzinfo=UTC)
    with transaction(engine) as session:
        run_statement(session, _INSERT_LEDGER, _ledger("k2", when))
    with Session(engine) as session:
        [entry] = session.exec(sqlmodel_select(LedgerEntry)).all()
    assert (entry.message_key, entry.processed_at, entry.number) == ("k2", when, 7)


def test_an_expanding_in_list_and_a_statements_own_limit_are_bound(engine: Engine) -> None:
    with transaction(engine) as session:
        for n in range(3):
            insert_row(session, Person, _person(f"p{n}@example.com"))
        none = run_statement(session, _OUTBOX_IDS_IN, {"ids": ["a@x", "b@x"]}).scalar()
        limited = [r.email for r in run_statement(session, _PEOPLE_LIMITED).rows]
    assert none == 0
    assert limited == ["p0@example.com", "p1@example.com"]


def test_a_driver_error_is_raised_as_sqlalchemys_integrity_error(engine: Engine) -> None:
    when = datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(IntegrityError), transaction(engine) as session:
        run_statement(session, _INSERT_LEDGER, _ledger("same", when))
        run_statement(session, _INSERT_LEDGER, _ledger("same", when))  # (account, key) is unique
    with transaction(engine) as session:
        assert run_statement(session, _LEDGER_BY_KEY, {"key": "same"}).first() is None  # all rolled back


def test_a_failed_message_in_a_batch_is_undone_alone_and_the_batch_commits_once(engine: Engine) -> None:
    when = datetime(2026, 3, 2, tzinfo=UTC)
    with batch_transaction(engine):
        with transaction(engine) as session:
            run_statement(session, _INSERT_LEDGER, _ledger("first", when, 1))
        with pytest.raises(IntegrityError), transaction(engine) as session:
            run_statement(session, _INSERT_LEDGER, _ledger("second", when, 2))
            run_statement(session, _INSERT_LEDGER, _ledger("first", when, 3))  # a duplicate: fails
        with transaction(engine) as session:  # the batch goes on after the failure
            run_statement(session, _INSERT_LEDGER, _ledger("third", when, 4))
        reader = create_engine(engine.url)  # a plain second connection, not taking the write lock
        with reader.connect() as elsewhere:  # nothing is visible outside before the batch commits
            assert elsewhere.execute(select(func.count()).select_from(LedgerEntry)).scalar() == 0
        reader.dispose()
    with Session(engine) as session:
        entries = session.exec(sqlmodel_select(LedgerEntry).order_by(col(LedgerEntry.id)))
        kept = [(e.message_key, e.number) for e in entries]
    assert kept == [("first", 1), ("third", 4)]


def test_a_batch_that_raises_keeps_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), batch_transaction(engine):
        with transaction(engine) as session:
            run_statement(session, _INSERT_LEDGER, _ledger("gone", datetime(2026, 3, 2, tzinfo=UTC)))
        raise RuntimeError("the service died mid-batch")
    with Session(engine) as session:
        assert session.exec(sqlmodel_select(LedgerEntry)).all() == []


def test_a_batch_on_an_unreachable_database_is_a_database_error() -> None:
    unreachable = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    with pytest.raises(DatabaseError, match="database unavailable"), batch_transaction(unreachable):
        pass


def test_statements_of_one_transaction_share_its_connection_and_a_new_transaction_gets_its_own(
    engine: Engine,
) -> None:
    seen = []
    with Session(engine) as session:
        first = run_statement(session, _PERSON_BY_ID, {"id": 1})
        seen.append(session.info["mailgate.direct.connection"][1])
        run_statement(session, _PERSON_BY_ID, {"id": 1})
        assert session.info["mailgate.direct.connection"][1] is seen[0]
        assert seen[0] is session.connection()  # the session's own connection, in its transaction
        session.commit()
        run_statement(session, _INSERT_LEDGER, _ledger("after-commit", datetime(2026, 12, 4, tzinfo=UTC)))
        assert session.info["mailgate.direct.connection"][1] is session.connection()
        session.rollback()  # the statement ran in the new transaction: rolled back with it
    assert first.rows == []
    with Session(engine) as session:
        assert run_statement(session, _LEDGER_BY_KEY, {"key": "after-commit"}).rows == []
