"""Large binary values written to SQLite in pieces, so that a big attachment is not copied twice more.

The sqlite3 driver binds a bytes parameter by copying it, and SQLite then builds the whole row in
one more buffer: a 25 MB attachment would cost another 50 MB while its INSERT runs. For SQLite, a
value of at least ``PIECEWISE_BYTES`` is inserted as ``zeroblob(n)`` and then written through
incremental blob I/O (``sqlite3.Connection.blobopen``) a piece at a time, in the same transaction
(SQLite spills the pages to its WAL as they fill). SQLite keeps a zeroblob unexpanded only in
the row's last column, so ``AttachedObject.data`` is declared last; in a database created before
that, the zeroblob is expanded and the insert costs one copy, as a plain one does. Other databases
get one plain INSERT.

Contract: ``insert_with_large_value`` leaves the same row as ``insert_row(session, table, values)``
would, inside the session's transaction, and returns the new row's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, func, insert
from sqlalchemy.sql.base import Executable
from sqlmodel import Session, SQLModel

from engine.storage.direct import insert_row, run_statement

__all__ = ["PIECEWISE_BYTES", "insert_with_large_value"]

PIECEWISE_BYTES = 1024 * 1024
PIECE_BYTES = 1024 * 1024
_SIZE = "large_value_size"
_ZEROBLOB_INSERTS: dict[tuple[type[SQLModel], str], Executable] = {}


def _zeroblob_insert(table: type[SQLModel], column: str) -> Executable:
    statement = _ZEROBLOB_INSERTS.get((table, column))
    if statement is None:
        clause = table.__table__  # type: ignore[attr-defined]
        built = insert(clause).values({column: func.zeroblob(bindparam(_SIZE))}).returning(clause.c.id)
        statement = _ZEROBLOB_INSERTS[(table, column)] = built
    return statement


def insert_with_large_value(
    session: Session, table: type[SQLModel], values: Mapping[str, Any], column: str
) -> int:
    """INSERT a row of ``table`` whose ``column`` holds a possibly large bytes value; its new id."""
    data = values[column]
    connection = session.connection()
    if connection.dialect.name != "sqlite" or len(data) < PIECEWISE_BYTES:
        return insert_row(session, table, values)
    params = {name: value for name, value in values.items() if name != column}
    params[_SIZE] = len(data)
    row_id = int(run_statement(session, _zeroblob_insert(table, column), params).scalar())
    driver = connection.connection.driver_connection
    assert driver is not None
    table_name = str(table.__tablename__)
    with driver.blobopen(table_name, column, row_id) as blob, memoryview(data) as view:
        for start in range(0, len(view), PIECE_BYTES):
            blob.write(view[start : start + PIECE_BYTES])
    return row_id
