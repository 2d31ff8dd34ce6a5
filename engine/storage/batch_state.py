"""What a batch of messages keeps while it runs: ``Pipelined``, its connection and what it read ahead.

See engine.storage.direct (how statements run in a batch) and engine.storage.db.batch_transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from engine.storage.deferred import DeferredWrites

IDS_RESERVED_AT_ONCE = 32  # new ids a batch takes from a table's sequence in one round trip


@dataclass
class Pipelined:
    """A batch's connection (in pipeline mode on PostgreSQL), and what it knows without asking again.

    ``pipeline``: psycopg's pipeline on PostgreSQL; None on SQLite, where only what is read
    ahead is kept (a statement there costs no round trip, but one SELECT for the batch's 50
    senders costs far less than 50).

    ``ids``: per table, ids taken from its sequence and not used yet (an INSERT given its id is
    sent without waiting, where ``INSERT ... RETURNING id`` waits for the id). ``ledger``: per
    (account, key), the fingerprint of a ledger entry the batch knows to exist (engine.storage.
    ledger); ``ledger_asked`` the keys it knows the answer for, present or not. ``recorded``: the
    entries written by the batch in order, so that a message's rollback forgets its own.
    """

    driver: Any
    pipeline: Any
    connection: Connection
    ids: dict[str, list[int]] = field(default_factory=dict)
    ledger: dict[tuple[str, str], str | None] = field(default_factory=dict)
    ledger_asked: set[tuple[str, str]] = field(default_factory=set)
    recorded: list[tuple[str, str]] = field(default_factory=list)
    apart: Any = None  # engine.storage.numbers.NumbersApart: the batch's numbers, committed at once
    # rows read ahead for the whole batch: (table name, id) -> the row's values, in column order;
    # and the senders' addresses (as looked up) -> the id of their person, or None for nobody
    rows: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    senders: dict[str, int | None] = field(default_factory=dict)

    # Message-IDs asked about ahead: whether an outgoing message of ours has it
    ours: dict[str, bool] = field(default_factory=dict)
    # each message's writes are not waited for when its savepoint ends (``batch_transaction``)
    optimistic: bool = False
    writes: Any = None  # the one cursor the batch's writes are sent on, once one was (results never read)
    deferred: DeferredWrites | None = None  # an optimistic batch's writes held back (engine.storage.deferred)

    def write_cursor(self) -> Any:
        """The cursor for the batch's writes whose results nobody reads: one for the whole batch.

        In pipeline mode a cursor holds only the result of its last statement; these are never read
        (their errors are raised where the pipeline is synced), so one cursor serves them all,
        sparing a cursor's making and closing per statement (about 4 % of the service's CPU).
        """
        if self.writes is None:
            self.writes = self.driver.cursor()
        return self.writes

    def forget_rows(self) -> None:
        """Forget the rows read ahead: one of them may have been written (read again if needed)."""
        self.rows.clear()
        self.senders.clear()

    def forget_row(self, table: str, row_id: int) -> None:
        """Forget one row read ahead, written since (its person's address is looked up again)."""
        self.rows.pop((table, row_id), None)

    # automatic replies: per mailbox, when those queued since ``replies_since`` were (the batch's
    # own included), and the mailboxes of those the batch queued, in order (for ``undo``)
    replies: dict[str, list[Any]] = field(default_factory=dict)
    replies_since: Any = None
    replies_queued: list[str] = field(default_factory=list)

    def mark(self) -> tuple[int, int]:
        """Where a message's savepoint begins (see ``undo``)."""
        return len(self.recorded), len(self.replies_queued)

    def undo(self, mark: tuple[int, int]) -> None:
        """Forget what the batch learnt since ``mark``: that message's savepoint was rolled back."""
        while len(self.recorded) > mark[0]:
            undone = self.recorded.pop()
            self.ledger.pop(undone, None)
            self.ledger_asked.discard(undone)  # asked again: another process may have written it
        while len(self.replies_queued) > mark[1]:
            self.replies[self.replies_queued.pop()].pop()

    def take_id(self, table: str) -> int:
        """A new id for a row of ``table``, from its sequence (a round trip per 32 ids)."""
        free = self.ids.get(table)
        if not free:
            sql = f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id')) FROM generate_series(1, %s)"
            try:
                cursor = self.driver.cursor()
                cursor.execute(sql, (IDS_RESERVED_AT_ONCE,))
                free = self.ids[table] = [row[0] for row in reversed(cursor.fetchall())]
            except self.connection.dialect.loaded_dbapi.Error as exc:
                raise driver_error(self.connection.dialect, sql, exc) from None
        return int(free.pop())


def driver_error(dialect: Dialect, sql: str, exc: Exception) -> Exception:
    """A driver's error as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``...)."""
    return DBAPIError.instance(sql, (), exc, dialect.loaded_dbapi.Error)
