"""A batch's writes held back and sent together: one INSERT per table instead of one per row.

On PostgreSQL every statement costs the service its driver's work (binding, dumping, sending)
and the server its own, whatever the statement does; a message of the benchmark's mix sent
about seven. In an optimistic batch (engine.storage.db.batch_transaction) nothing waits for a
write's outcome before the batch's next read or its commit, and an error there runs the batch
again, each message on its own. So its writes can wait too: ``DeferredWrites`` keeps them, in
order, and sends them just before the next statement that is not one of them (a read, a DELETE,
the ORM's), and before the commit. The INSERTs held for one table are then sent as one
``INSERT ... SELECT * FROM unnest(<one array per column>)``, one statement text whatever the
number of rows (so prepared once); then the UPDATEs held, in the order they were made.

What may wait: a plain INSERT (its values bound, no RETURNING, no ON CONFLICT), and a statement
marked ``DEFERRABLE`` (an UPDATE of one row by its id, whose outcome nobody reads). Sending a
table's rows before its children's (the schema's foreign keys) and the UPDATEs after every
INSERT keeps the database's answer the same: nothing reads in between, an UPDATE names a row
inserted before it, and the rows of one INSERT statement keep their order.

Savepoints (each message has one) wait as well, since a message that only wrote held rows needs
none: ``begin`` notes where the message's rows start; a rollback of a savepoint never sent only
forgets its rows; one that must be sent (a statement of the message is about to run) is sent
after the rows held before it and before the message's own, so that rolling back to it undoes
the message's work alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert

# execution option of a statement that may be held back (see the module docstring)
DEFERRABLE: dict[str, Any] = {"mailgate_deferrable": True}
# held values (bytes and text) beyond which what is held is sent at once: a batch of large mails
# neither holds them all nor sends one statement too large for the server
HELD_BYTES_AT_MOST = 16 * 1024 * 1024

_SIMPLE_INSERT = re.compile(
    r"INSERT INTO (\S+) \(([^()]*)\) VALUES \((.*)\)(?: RETURNING [\w.]+)?\Z",  # an unread id: dropped
    re.DOTALL,
)
_BIND = re.compile(r"%\((\w+)\)s(?:::[A-Z ]+)?\Z")


@dataclass(frozen=True)
class HeldInsert:
    """How one INSERT statement's rows are sent together: the unnest statement and its binds."""

    table: str
    sql: str  # INSERT INTO t (a, b) SELECT * FROM unnest(%(a)b::T[], %(b)b::U[]): binary arrays
    binds: tuple[str, ...]  # the single-row statement's bind names, in the order of its columns


def held_insert(statement: Executable, sql: str, dialect: Dialect) -> HeldInsert | None:
    """The batched form of a compiled single-row INSERT, or None if it must be sent as it is."""
    if not isinstance(statement, Insert) or not _plain(statement):
        return None
    table = statement.table
    if not isinstance(table, Table):
        return None
    found = _SIMPLE_INSERT.match(sql)
    if found is None:
        return None
    columns = [name.strip().strip('"') for name in found.group(2).split(",")]
    values = [value.strip() for value in found.group(3).split(",")]
    if len(columns) != len(values) or not columns:
        return None
    binds: list[str] = []
    arrays: list[str] = []
    for column, value in zip(columns, values, strict=True):
        bind = _BIND.match(value)
        if bind is None or column not in table.c:
            return None  # a SQL expression (a default computed by the server, say): sent as it is
        binds.append(bind.group(1))
        arrays.append(f"%({bind.group(1)})b::{table.c[column].type.compile(dialect=dialect)}[]")
    unnest = f"INSERT INTO {found.group(1)} ({found.group(2)}) SELECT * FROM unnest({', '.join(arrays)})"
    return HeldInsert(table.name, unnest, tuple(binds))


def _plain(statement: Insert) -> bool:
    return (
        not statement._returning
        and statement._post_values_clause is None
        and statement.select is None
        and not statement._multi_values
    )


def is_deferrable(statement: Executable) -> bool:
    """Whether the statement was marked ``DEFERRABLE``."""
    return bool(statement.get_execution_options().get("mailgate_deferrable"))


@dataclass
class _Savepoint:
    name: str
    start: int  # where its rows begin in ``DeferredWrites.held``
    sent: bool = False


@dataclass
class DeferredWrites:
    """The writes an optimistic batch holds back, and its messages' savepoints (module docstring).

    ``send_sql(sql, params)`` sends one statement on the batch's connection without waiting;
    ``table_order``: the tables' names, parents before children.
    """

    send_sql: Callable[[str, Any], None]
    table_order: Mapping[str, int]
    held: list[tuple[HeldInsert | None, str, Mapping[str, Any]]] = field(default_factory=list)
    savepoints: list[_Savepoint] = field(default_factory=list)
    held_bytes: int = 0

    def hold(self, insert: HeldInsert | None, sql: str, values: Mapping[str, Any]) -> None:
        """Keep a write: the rows of ``insert``, or (None) a statement sent as it is."""
        self.held.append((insert, sql, values))
        self.held_bytes += sum(len(v) for v in values.values() if isinstance(v, (bytes, str)))
        if self.held_bytes > HELD_BYTES_AT_MOST:
            self.send(writes=False)

    def begin(self, name: str) -> None:
        """A savepoint begins: sent only if one of its statements must be (``send``)."""
        self.savepoints.append(_Savepoint(name, len(self.held)))

    def release(self, name: str) -> None:
        """A savepoint ends well: its rows stay held, now the enclosing scope's."""
        self._pop(name)

    def rollback(self, name: str) -> bool:
        """Forget the savepoint's held rows; True if it was sent (the server must roll back too)."""
        savepoint = self._pop(name)
        if savepoint is None:
            return True
        del self.held[savepoint.start :]
        return savepoint.sent

    def _pop(self, name: str) -> _Savepoint | None:
        for index in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[index].name == name:
                found = self.savepoints[index]
                del self.savepoints[index:]
                return found
        return None

    def send(self, *, writes: bool) -> None:
        """Send what is held, each savepoint at its place; all savepoints too if ``writes`` follows.

        A read needs no savepoint of its own: one is sent only when rows held after it go out, or
        when the statement that follows writes.
        """
        done = 0
        for savepoint in self.savepoints:
            if savepoint.sent:
                continue
            if savepoint.start == len(self.held) and not writes:
                continue  # nothing of it held yet, and a read follows: it may stay unsent
            self._send_rows(self.held[done : savepoint.start])
            self.send_sql(f"SAVEPOINT {savepoint.name}", None)
            savepoint.sent = True
            done = savepoint.start
        self._send_rows(self.held[done:])
        self.held.clear()
        self.held_bytes = 0
        for savepoint in self.savepoints:
            savepoint.start = 0

    def discard(self) -> None:
        """Forget everything held (the batch is rolled back)."""
        self.held.clear()
        self.held_bytes = 0
        self.savepoints.clear()

    def _send_rows(self, rows: list[tuple[HeldInsert | None, str, Mapping[str, Any]]]) -> None:
        if not rows:
            return
        grouped: dict[str, tuple[HeldInsert, list[tuple[str, Mapping[str, Any]]]]] = {}
        others: list[tuple[str, Mapping[str, Any]]] = []
        for insert, sql, values in rows:
            if insert is None:
                others.append((sql, values))
            else:
                grouped.setdefault(insert.sql, (insert, []))[1].append((sql, values))
        last = len(self.table_order)
        by_table = sorted(grouped.values(), key=lambda group: self.table_order.get(group[0].table, last))
        for insert, statements in by_table:
            if len(statements) == 1:
                self.send_sql(*statements[0])  # one row: the statement as it was made
            else:
                self.send_sql(insert.sql, {b: [values[b] for _, values in statements] for b in insert.binds})
        for sql, values in others:
            self.send_sql(sql, values)
