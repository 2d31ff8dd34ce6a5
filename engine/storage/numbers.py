"""Handing out the numbers of new calls, requests and tasks (one ``numbersequence`` row each)."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from sqlalchemy import bindparam, case, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
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


def _reserve_statement(name: str, count: Any = 1) -> Any:
    """One UPDATE ... RETURNING that takes the next ``count`` numbers: from the sequence's, or from
    one above the highest in use; it returns the sequence's new value (the last number taken + 1)."""
    table = NUMBERED[name]
    highest = sa_select(func.coalesce(func.max(table.number), 0)).scalar_subquery()
    next_value = col(NumberSequence.next_value)
    return (
        update(NumberSequence)
        .where(col(NumberSequence.name) == bindparam("seq_name"))
        .values(next_value=case((next_value > highest, next_value), else_=highest + 1) + count)
        .returning(next_value)
    )


_RESERVE = {name: _reserve_statement(name) for name in NUMBERED}
# On PostgreSQL, one number committed without waiting for the disk (``_reserve_apart`` says why that
# is safe): ``set_config(..., true)`` sets ``synchronous_commit`` for this statement's transaction only
_RESERVE_APART = {
    name: statement.where(func.set_config("synchronous_commit", "off", True).is_not(None))
    for name, statement in _RESERVE.items()
}
# a batch's ``count`` numbers at once, committed and flushed: a process may keep some for its next
# batch (``NumbersApart``), and a number it holds must outlive a crash of the server
_RESERVE_BLOCK = {name: _reserve_statement(name, bindparam("count")) for name in NUMBERED}
# numbers taken back by their sequence: only if it still stands where the batch left it
_GIVE_BACK = (
    update(NumberSequence)
    .where(
        col(NumberSequence.name) == bindparam("seq_name"), col(NumberSequence.next_value) == bindparam("end")
    )
    .values(next_value=bindparam("first"))
)
NUMBERS_TAKEN_AT_ONCE = 16  # by a batch on PostgreSQL, in one round trip


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
    highest number in use. A batch takes its numbers several at a time (``NumbersApart``), and
    those it commits with a flush of the log: one flush per 16 new calls costs little, and a
    process may keep numbers beyond its batch.
    """
    batch = pipelined_batch()
    if batch is not None and batch.connection.engine is engine:  # one connection for the batch's numbers
        if batch.apart is None:
            batch.apart = NumbersApart(engine)
        number: int | None = batch.apart.take(name)
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as apart:
            reserved = run_statement_on(apart, _RESERVE_APART[name], {"seq_name": name}).scalar()
            number = None if reserved is None else int(reserved) - 1
    if number is None:  # the row was deleted by hand: recreate it, in a transaction of its own
        with Session(engine) as session:
            number = _reserve_within(session, name)
            session.commit()
    return number


# per database, numbers of each sequence a batch took and neither used nor could give back (another
# process took numbers since): the process's next batch uses them first
_KEPT: weakref.WeakKeyDictionary[Engine, dict[str, list[int]]] = weakref.WeakKeyDictionary()


class NumbersApart:
    """A batch's own connection for its new numbers, taken ``NUMBERS_TAKEN_AT_ONCE`` at a time.

    Contract: ``take`` returns a number no one else has or will be given, or None when the
    sequence's row is gone. ``close`` gives the numbers the batch took and did not use back to
    their sequence when it still stands where the batch left it (so one process leaves no gaps
    this way); when another process took numbers since, or the batch failed, the process's next
    batch uses them first. A number a rolled-back message used is a gap, as before.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.free: dict[str, list[int]] = {}  # per sequence, the numbers taken and not used, in order
        self.end: dict[str, int] = {}  # per sequence, its value after the numbers this batch took last

    def take(self, name: str) -> int | None:
        """The next number of ``name`` (see the class)."""
        free = self.free.setdefault(name, [])
        if not free:
            free += _KEPT.get(self.engine, {}).pop(name, [])
        if not free:
            values = {"seq_name": name, "count": NUMBERS_TAKEN_AT_ONCE}
            end = run_statement_on(self.connection, _RESERVE_BLOCK[name], values).scalar()
            if end is None:
                return None
            self.end[name] = int(end)
            free += range(int(end) - NUMBERS_TAKEN_AT_ONCE, int(end))
        return free.pop(0)

    def close(self, *, failed: bool) -> None:
        """Give back or keep the numbers not used (see the class), then close the connection."""
        try:
            for name, free in self.free.items():
                if free and not failed and free[-1] + 1 == self.end.get(name):
                    first = len(free) - 1  # the run of numbers the sequence ended with, given back whole
                    while first > 0 and free[first - 1] + 1 == free[first]:
                        first -= 1
                    values = {"seq_name": name, "end": free[-1] + 1, "first": free[first]}
                    with contextlib.suppress(DBAPIError):  # the database failed: they are kept
                        if run_statement_on(self.connection, _GIVE_BACK, values).rowcount == 1:
                            del free[first:]
                if free:
                    kept = _KEPT.setdefault(self.engine, {}).setdefault(name, [])
                    kept[:] = sorted({*kept, *free})
        finally:
            self.connection.close()
