"""Handing out the numbers of new calls, requests and tasks (one ``numbersequence`` row each)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, case, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.storage import models
from engine.storage.direct import pipelined_batch, run_statement, run_statement_on
from engine.storage.models import NumberSequence

NUMBERED: dict[str, type[models.Call] | type[models.Request] | type[models.Task]] = {
    "call": models.Call,
    "request": models.Request,
    "task": models.Task,
}


_LOCK_SEQUENCE = (
    sa_select(col(NumberSequence.next_value))
    .where(col(NumberSequence.name) == bindparam("name"))
    .with_for_update()
)
_HIGHEST = {name: sa_select(func.max(table.number)) for name, table in NUMBERED.items()}
_STORE_SEQUENCE = (
    update(NumberSequence)
    .where(col(NumberSequence.name) == bindparam("seq_name"))
    .values(next_value=bindparam("value"))
)


def _reserve_statement(name: str) -> Any:
    """One UPDATE ... RETURNING that takes the next number: the sequence's, or one above the highest."""
    table = NUMBERED[name]
    highest = sa_select(func.coalesce(func.max(table.number), 0)).scalar_subquery()
    next_value = col(NumberSequence.next_value)
    return (
        update(NumberSequence)
        .where(col(NumberSequence.name) == bindparam("seq_name"))
        .values(next_value=case((next_value > highest, next_value), else_=highest + 1) + 1)
        .returning(next_value)
    )


_RESERVE = {name: _reserve_statement(name) for name in NUMBERED}
# On PostgreSQL, the same, committed without waiting for the disk (``_reserve_apart`` says why that
# is safe): ``set_config(..., true)`` sets ``synchronous_commit`` for this statement's transaction only
_RESERVE_APART = {
    name: statement.where(func.set_config("synchronous_commit", "off", True).is_not(None))
    for name, statement in _RESERVE.items()
}


def next_number(session: Session, name: str) -> int:
    """Reserve the next available number for a new call, request or task.

    The number is the sequence's next value, or one above the highest number in use if rows were
    added with explicit numbers (fixtures). On SQLite (one process) it is taken inside the
    caller's transaction, the sequence row locked until that transaction ends, so a rolled-back
    message gives its number back and numbers have no gaps. On PostgreSQL, which several
    processes share, it is taken in a transaction of its own, committed at once (see
    ``_reserve_apart``). Where the database has UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+)
    that is one statement.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _reserve_apart(connection.engine, name)
    return _reserve_within(session, name)


def _reserve_within(session: Session, name: str) -> int:
    """Take the next number inside the session's transaction, the sequence row locked until it ends."""
    connection = session.connection()
    if connection.dialect.update_returning:
        reserved = run_statement(session, _RESERVE[name], {"seq_name": name}).scalar()
        if reserved is not None:
            return int(reserved) - 1
    next_value = connection.execute(_LOCK_SEQUENCE, {"name": name}).scalar()
    highest = connection.execute(_HIGHEST[name]).scalar() or 0
    number = max(next_value or 1, highest + 1)
    if next_value is None:  # the row was deleted by hand; recreate it
        session.add(NumberSequence(name=name, next_value=number + 1))
        session.flush()
    else:
        connection.execute(_STORE_SEQUENCE, {"seq_name": name, "value": number + 1})
    return number


def _reserve_apart(engine: Engine, name: str) -> int:
    """Take the next number in a transaction of its own on another connection, committed at once.

    Holding the sequence row until a batch commits would make the batches of every process that
    log calls wait for each other (issue 14: two workers were no faster than one). Committed at
    once, the row is locked for one statement; the price is a gap in the numbers when the message
    that took one is rolled back (quarantined, or its batch lost with its connection).

    That commit does not wait for the disk (``synchronous_commit`` off for it alone): with one
    flush of the write-ahead log per new call, the server's disk set the pace of every process.
    It loses nothing: the batch that uses the number commits later, and waiting for its own
    commit flushes the log up to it, the number's commit included; a number whose commit a
    server crash lost was used by no committed row, and the reservation never goes below the
    highest number in use.
    """
    batch = pipelined_batch()
    if batch is not None and batch.connection.engine is engine:  # one connection for the batch's numbers
        if batch.apart is None:
            batch.apart = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        reserved = run_statement_on(batch.apart, _RESERVE_APART[name], {"seq_name": name}).scalar()
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as apart:
            reserved = run_statement_on(apart, _RESERVE_APART[name], {"seq_name": name}).scalar()
    if reserved is None:  # the row was deleted by hand: recreate it, in a transaction of its own
        with Session(engine) as session:
            number = _reserve_within(session, name)
            session.commit()
        return number
    return int(reserved) - 1
