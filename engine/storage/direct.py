"""Prebuilt statements run straight on the database driver's cursor, for the path of every message.

SQLAlchemy's execution machinery (execution context, result objects, events) costs several times
what SQLite needs to run a small statement. The statements a message runs are fixed, so each is
compiled once per dialect (and per set of parameter names) with SQLAlchemy's own compiler, and
then only its values are bound: converted by the column types' own bind and result processors (a
``DateTime`` becomes the string SQLAlchemy stores in SQLite, a ``Boolean`` comes back a bool) and
handed to the driver on the session's connection, inside the session's transaction. Driver
errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``), as if SQLAlchemy had
run the statement. No ORM state is touched: statements that change rows an object in the session
holds must mirror the change themselves (see ``engine.storage.items.ItemStore.set_columns``).

Contract: ``run`` takes a Core statement built once (a module constant), never one built per
call (the compiled form is cached by the statement's identity), and plain parameter values.

On PostgreSQL a batch's transaction runs in psycopg's pipeline mode (``pipelined``): a statement
whose result nobody reads (an INSERT or UPDATE without RETURNING) is sent without waiting for the
server, and a read waits only for what was sent before it, in the same round trip. What was sent
is waited for, and its first error raised, where ``settle`` is called: at the end of each message
(engine.storage.db.transaction), so that an error is the message's own and rolls back its
savepoint alone. Such a statement's ``rowcount`` is then unknown (-1); the path of a message never
reads it.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, SQLModel

from engine.storage.batch_state import Pipelined, driver_error
from engine.storage.deferred import DeferredWrites, HeldInsert, held_insert, is_deferrable

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    compiled: SQLCompiler
    sql: str
    positional: tuple[str, ...] | None  # the order of the parameters, for a positional paramstyle
    binders: tuple[tuple[str, Processor], ...]  # parameter name -> the type's bind processor
    expanding: bool  # has an IN (...) list whose length is known only per call
    row_type: Any  # a named tuple class for the returned columns, or None
    readers: tuple[Processor | None, ...]  # per returned column: the type's result processor
    held: HeldInsert | None  # on PostgreSQL, its rows sent together when held (engine.storage.deferred)


_CACHE: dict[tuple[int, str, tuple[str, ...]], tuple[Executable, _Compiled]] = {}


def _compile(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    binders: list[tuple[str, Processor]] = []
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            binders.append((name, processor))
    columns = list(getattr(statement, "exported_columns", None) or ())
    row_type: Any = namedtuple("Row", [str(c.key) for c in columns], rename=True) if columns else None
    readers: list[Processor | None] = []
    if columns:
        readers = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    return _Compiled(
        compiled=compiled,
        sql=compiled.string,
        positional=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
        binders=tuple(binders),
        expanding=any(bind.expanding for bind in compiled.binds.values()),
        row_type=row_type,
        readers=tuple(readers),
        held=held_insert(statement, compiled.string, dialect) if dialect.name == "postgresql" else None,
    )


def _compiled_for(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    key = (id(statement), dialect.name, keys)
    found = _CACHE.get(key)
    if found is None or found[0] is not statement:
        found = _CACHE[key] = (statement, _compile(statement, dialect, keys))
    return found[1]


class DirectResult:
    """The rows (already converted) and the row count of one statement run by ``run``."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        """The first row (a named tuple), or None."""
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


def _bound(entry: _Compiled, params: Mapping[str, Any]) -> tuple[str, Any]:
    compiled = entry.compiled
    if entry.expanding:
        state = compiled.construct_expanded_state(dict(params))
        expanded = dict(state.parameters)
        for name, expanded_processor in state.processors.items():
            if expanded.get(name) is not None:
                expanded[name] = expanded_processor(expanded[name])
        if state.positiontup is not None:
            return state.statement, tuple(expanded[name] for name in state.positiontup)
        return state.statement, expanded
    values: dict[str, Any] = dict(params)
    if len(params) < len(compiled.binds):  # binds with their own values (a LIMIT, say)
        values = dict(compiled.construct_params(values))
    for name, processor in entry.binders:
        value = values.get(name)
        if value is not None:
            values[name] = processor(value)
    if entry.positional is not None:
        return entry.sql, tuple(values[name] for name in entry.positional)
    return entry.sql, values


# the batch's connection in pipeline mode in this task (or thread)
_PIPELINE: ContextVar[Pipelined | None] = ContextVar("mailgate_pipeline", default=None)
_ON = 1  # libpq's PQ_PIPELINE_ON: in pipeline mode, not aborted by an error
_IN_ERROR = 3  # libpq's PQTRANS_INERROR: in a transaction the server aborted (psycopg.pq.TransactionStatus)


def pipelined_batch() -> Pipelined | None:
    """The batch this task is in, if any (in pipeline mode on PostgreSQL: ``pipeline`` is set)."""
    return _PIPELINE.get()


@contextmanager
def pipelined(connection: Connection, *, optimistic: bool = False) -> Iterator[None]:
    """The block is one batch (``pipelined_batch``): what it reads ahead is kept for its messages.

    On PostgreSQL (psycopg) the block's statements on this connection also run in pipeline mode;
    leaving the block waits for everything sent. On SQLite statements run as ever, one at a time.
    """
    driver = connection.connection.driver_connection
    dialect = connection.dialect
    if dialect.name != "postgresql" or not hasattr(driver, "pipeline"):
        plain = Pipelined(driver, None, connection)
        plain_token = _PIPELINE.set(plain)
        try:
            yield
        finally:
            _PIPELINE.reset(plain_token)
        return
    try:
        pipeline = driver.pipeline()  # type: ignore[union-attr]
        held = pipeline.__enter__()
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, "(pipeline)", exc) from None
    batch = Pipelined(driver, held, connection, optimistic=optimistic)
    if optimistic:
        batch.deferred = DeferredWrites(batch.write_cursor().execute, _table_order())
    token = _PIPELINE.set(batch)
    try:
        yield
        send_deferred(batch, writes=False)  # before the commit: what the batch held back
    except BaseException as exc:
        _PIPELINE.reset(token)
        if batch.deferred is not None:
            batch.deferred.discard()
        if batch.apart is not None:
            batch.apart.close(failed=True)
        if not driver.closed:  # type: ignore[union-attr]
            pipeline.__exit__(type(exc), exc, exc.__traceback__)
        raise
    _PIPELINE.reset(token)
    if batch.apart is not None:
        batch.apart.close(failed=False)
    try:
        pipeline.__exit__(None, None, None)
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, "(pipeline)", exc) from None
    # COMMIT in an aborted transaction rolls back without an error: the mails would be deleted
    if driver.info.transaction_status == _IN_ERROR:  # type: ignore[union-attr]
        aborted = dialect.loaded_dbapi.errors.InFailedSqlTransaction("the batch's transaction was aborted")
        raise driver_error(dialect, "(commit)", aborted) from None


def deferred_for(driver: Any) -> Pipelined | None:
    """The optimistic batch whose writes on this driver connection are held back, if any."""
    found = _PIPELINE.get()
    if found is None or found.driver is not driver or found.deferred is None:
        return None
    return found


def send_deferred(batch: Pipelined, *, writes: bool) -> None:
    """Send what the batch holds back (``DeferredWrites.send``), its errors raised as SQLAlchemy's."""
    if batch.deferred is not None and (batch.deferred.held or writes):
        try:
            batch.deferred.send(writes=writes)
        except batch.connection.dialect.loaded_dbapi.Error as exc:
            raise driver_error(batch.connection.dialect, "(held writes)", exc) from None


@functools.cache
def _table_order() -> dict[str, int]:
    return {table.name: index for index, table in enumerate(SQLModel.metadata.sorted_tables)}


def settle_driver(dialect: Dialect, driver: Any) -> None:
    """Wait for every statement sent on this driver connection in pipeline mode; raise the first error."""
    found = _PIPELINE.get()
    if found is None or found.driver is not driver or found.pipeline is None:
        return
    send_deferred(found, writes=False)
    pipeline = found.pipeline
    if not pipeline.command_queue and not pipeline.result_queue and driver.pgconn.pipeline_status == _ON:
        return  # every result is in (a read waited for them all), none failed: nothing to wait for
    try:
        pipeline.sync()
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, "(pipeline sync)", exc) from None


def settle(connection: Connection) -> None:
    """``settle_driver`` for a connection: what it sent has been done, or its first error is raised."""
    if _PIPELINE.get() is not None:
        settle_driver(connection.dialect, connection.connection.driver_connection)


def run_statement_on(
    connection: Connection, statement: Executable, params: Mapping[str, Any] = {}
) -> DirectResult:
    """Run a prebuilt statement on a connection's driver connection (in its current transaction)."""
    dialect = connection.dialect
    entry = _compiled_for(statement, dialect, tuple(sorted(params)))
    sql, values = _bound(entry, params)
    driver = connection.connection.driver_connection
    assert driver is not None
    found = _PIPELINE.get()
    try:
        if found is not None and found.deferred is not None and found.driver is driver:
            writes_only = entry.row_type is None and not entry.expanding
            if writes_only and (entry.held is not None or is_deferrable(statement)):
                found.deferred.hold(entry.held, sql, values)
                return DirectResult([], -1)
            send_deferred(found, writes=entry.row_type is None)
        if (
            found is not None
            and found.driver is driver
            and found.pipeline is not None
            and entry.row_type is None
        ):
            found.write_cursor().execute(sql, values)  # sent; its outcome known at the next read or settle
            return DirectResult([], -1)
        cursor = driver.cursor()
        try:
            cursor.execute(sql, values)
            raw_rows: Sequence[Any] = cursor.fetchall() if entry.row_type is not None else ()
            rowcount = cursor.rowcount
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error) from None
    rows: list[Any] = []
    if raw_rows and entry.row_type is not None:
        readers = entry.readers
        make = entry.row_type._make
        for raw in raw_rows:
            rows.append(
                make(
                    value if read is None or value is None else read(value)
                    for read, value in zip(readers, raw, strict=False)
                )
            )
    return DirectResult(rows, rowcount)


_CONNECTION = "mailgate.direct.connection"


def connection_of(session: Session) -> Connection:
    """The connection of the session's transaction (found once per transaction)."""
    # ``session.connection()`` walks the session's transaction machinery on every call; the
    # connection stays the same for as long as the session's (root) transaction does
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION)
    if cached is not None and transaction is not None and cached[0] is transaction:
        connection: Connection = cached[1]
    else:
        connection = session.connection()
        session.info[_CONNECTION] = (session.get_transaction(), connection)
    return connection


def run_statement(session: Session, statement: Executable, params: Mapping[str, Any] = {}) -> DirectResult:
    """Run a prebuilt statement in the session's transaction, straight on the driver."""
    return run_statement_on(connection_of(session), statement, params)


_INSERT_RETURNING_ID: dict[type[SQLModel], Executable] = {}
_INSERT: dict[type[SQLModel], Executable] = {}


def insert_row(session: Session, table: type[SQLModel], values: Mapping[str, Any]) -> int:
    """INSERT one row of ``table`` with ``values`` (column name -> value) and return its new id.

    In a batch in pipeline mode the id is taken ahead from the table's sequence, so that the
    INSERT is sent without waiting for it.
    """
    batch = _PIPELINE.get()
    if batch is not None:
        connection = connection_of(session)
        if connection.connection.driver_connection is batch.driver:
            name = str(table.__tablename__)
            if name == "person" and batch.senders:  # a new person: its address is looked up again
                email = values.get("email")
                if isinstance(email, str) and email.isascii():  # lower() as the database's
                    batch.senders.pop(email.lower(), None)
                else:
                    batch.forget_rows()
            if batch.pipeline is not None:
                plain = _INSERT.get(table)
                if plain is None:
                    plain = _INSERT[table] = insert(table.__table__)  # type: ignore[attr-defined]
                new_id = batch.take_id(name)
                run_statement_on(connection, plain, {**values, "id": new_id})
                return new_id
    statement = _INSERT_RETURNING_ID.get(table)
    if statement is None:
        table_clause = table.__table__  # type: ignore[attr-defined]
        statement = _INSERT_RETURNING_ID[table] = insert(table_clause).returning(table_clause.c.id)
    new_id = run_statement(session, statement, values).scalar()
    assert new_id is not None
    return int(new_id)
