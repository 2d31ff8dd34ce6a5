"""Opening the database (its schema checked or created) and transactions; item numbers: ``numbers``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, create_engine, select

from engine.config.database import DEFAULT_TIMEOUTS, DatabaseTimeouts
from engine.errors import MailgateError
from engine.storage import leases, models, status  # noqa: F401  (their tables join the schema)
from engine.storage.direct import (
    deferred_for,
    pipelined,
    pipelined_batch,
    send_deferred,
    settle,
    settle_driver,
)
from engine.storage.failures import is_outage
from engine.storage.models import NumberSequence
from engine.storage.numbers import NUMBERED
from engine.storage.schema import SchemaVersionError, prepare_schema
from engine.storage.token_keys import ensure_token_secret

# execution options of a connection that only reads (monitoring): on SQLite it takes no write lock
READ_ONLY: dict[str, Any] = {"mailgate_read_only": True}


class DatabaseError(MailgateError):
    """The database could not be opened or its schema created."""


class BatchNotSettled(BaseException):
    """A database error in a batch whose messages were not waited for one by one.

    ``batch_transaction(optimistic=True)`` does not know which message caused it: the batch is
    rolled back whole, for the caller to run again with ``optimistic=False``, where each message's
    error is its own. A BaseException, so that no handler of one message's errors takes it.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"a batch not settled message by message failed: {cause}")
        self.cause = cause


def _sqlite_pragmas(foreign_keys: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" event start transactions (BEGIN IMMEDIATE, below), not the driver
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA busy_timeout=10000")
        # a batch gives each message a savepoint, and SQLite journals every page a message changes
        # for it; past 64 KB that journal spills to a temporary file, two writes a page (about 20
        # pages a message: a quarter of the service's system time in bench_e2e). In memory it
        # costs no call to the kernel, and it is bounded by what one batch changes.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    return on_connect


def create_database_engine(
    url: str, *, foreign_keys: bool = True, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS
) -> Engine:
    """An engine for a SQLAlchemy URL, set up as mailgate uses it; the schema is neither checked nor made.

    ``foreign_keys=False`` leaves SQLite's foreign-key enforcement off, as schema migrations need
    (a table rebuilt by a migration is dropped while others still refer to it). ``timeouts``
    bound every PostgreSQL connection (engine/storage/pg_guard.py); parameters the URL names win.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError for junk
        raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    sqlite = parsed.drivername.startswith("sqlite")
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    postgres = parsed.drivername.startswith("postgresql")
    if postgres:
        # timestamps are stored as UTC without a zone
        connect_args["options"] = f"-c timezone=UTC {timeouts.server_options()}"
        connect_args.update(
            (name, value) for name, value in timeouts.libpq_parameters().items() if name not in parsed.query
        )
    engine = create_engine(parsed, connect_args=connect_args)
    if postgres and parsed.drivername == "postgresql+psycopg":
        from engine.storage.pg_connection import guarded_connection  # psycopg only for PostgreSQL

        connection_class = guarded_connection(timeouts.answer_seconds)
        event.listen(
            engine, "do_connect", lambda _d, _r, cargs, cparams: connection_class.connect(*cargs, **cparams)
        )
    _use_driver_savepoints(engine.dialect)
    _settle_sqlalchemy_statements(engine.dialect)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas(foreign_keys))
        # take the write lock at the start, so two writers never read the same next number
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def shown_url(engine: Engine) -> str:
    """The engine's URL as it may be shown to a person (no password)."""
    return engine.url.render_as_string(hide_password=True)


def _adopt_unversioned(connection: Connection) -> str:
    """Stamp a database made before schema versions as r1 (needs Alembic, so imported only then)."""
    from engine.storage.revisions import adopt_unversioned

    return adopt_unversioned(connection)


def schema_metadata() -> MetaData:
    """Every table of the schema (SQLModel's metadata), the admin console's included.

    The console's tables join it only when this is asked (to create the schema): a process that
    opens a database already made, as every ``mailgate run`` and ``deliver`` does, never uses them,
    and defining them is a hundredth of its start-up.
    """
    from engine.storage import console  # noqa: F401  (its tables join the schema)

    return SQLModel.metadata


def open_database(url: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> Engine:
    """Open the database at a SQLAlchemy URL, after checking its schema version (see engine.storage.schema).

    A brand-new (empty) database is created at the current schema. One at an older or a newer
    schema raises ``SchemaVersionError``, and nothing is written to it.
    """
    engine = create_database_engine(url, timeouts=timeouts)
    try:
        prepare_schema(engine, schema_metadata, _adopt_unversioned)
        _create_sequences(engine)
        ensure_token_secret(engine)
    except SchemaVersionError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc)  # no "Background on this error" link
        raise DatabaseError(f"cannot open database {shown_url(engine)}: {reason}") from None
    return engine


def _use_driver_savepoints(dialect: Any) -> None:
    """Savepoints sent straight to the driver: each message of a batch has one (see batch_transaction).

    The dialect's own hooks build and compile a statement each time, several times the cost of the
    savepoint itself; these three are the hooks a dialect overrides for this, taking the same names.
    """

    def send(connection: Connection, sql: str) -> None:
        driver = connection.connection.driver_connection
        try:
            driver.execute(sql)  # type: ignore[union-attr]
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, (), exc, dialect.loaded_dbapi.Error) from None

    def do_savepoint(connection: Connection, name: str) -> None:
        batch = deferred_for(connection.connection.driver_connection)
        if batch is not None and batch.deferred is not None:
            batch.deferred.begin(name)  # sent when needed (engine.storage.deferred)
            return
        send(connection, f"SAVEPOINT {name}")

    def do_release_savepoint(connection: Connection, name: str) -> None:
        batch = deferred_for(connection.connection.driver_connection)
        if batch is not None and batch.deferred is not None:
            batch.deferred.release(name)
        # On PostgreSQL a released savepoint is one round trip to the server for nothing that a
        # message needs: left open, its work stays in the transaction just the same, the next
        # message's savepoint nests inside it, and a rollback to that one undoes that one only.
        # (Its subtransaction id is held to the commit either way.) SQLite releases in process.
        if dialect.name != "postgresql":
            send(connection, f"RELEASE SAVEPOINT {name}")

    def do_rollback_to_savepoint(connection: Connection, name: str) -> None:
        batch = deferred_for(connection.connection.driver_connection)
        if batch is not None and batch.deferred is not None and not batch.deferred.rollback(name):
            return  # never sent: the message's writes were all held, and are forgotten
        # in pipeline mode (PostgreSQL, a batch) what the message sent is waited for first: after an
        # error the server skips everything up to that sync; its error was raised already
        with suppress(DBAPIError):  # a lost connection fails the rollback itself, below
            settle(connection)
        send(connection, f"ROLLBACK TO SAVEPOINT {name}")
        settle(connection)

    dialect.do_savepoint = do_savepoint
    dialect.do_release_savepoint = do_release_savepoint
    dialect.do_rollback_to_savepoint = do_rollback_to_savepoint


def _settle_sqlalchemy_statements(dialect: Any) -> None:
    """A statement SQLAlchemy runs (the ORM's) gets its result at once, even in pipeline mode,
    and one that writes makes the batch forget the rows it read ahead (on either database).

    SQLAlchemy reads a cursor's description and row count right after executing, which a
    pipelined statement has only once the pipeline is synced; these are its hooks for executing.
    """
    for name in ("do_execute", "do_execute_no_params", "do_executemany"):
        run = getattr(dialect, name)

        def settled(cursor: Any, *args: Any, _run: Any = run, **kwargs: Any) -> None:
            held = deferred_for(cursor.connection)
            if held is not None:  # what the batch held back goes first
                send_deferred(held, writes=not str(args[0]).startswith("SELECT"))
            _run(cursor, *args, **kwargs)
            batch = pipelined_batch()
            if batch is not None and batch.rows and not str(args[0]).startswith("SELECT"):
                batch.forget_rows()  # the ORM wrote something: rows read ahead may be stale
            settle_driver(dialect, cursor.connection)

        setattr(dialect, name, settled)


def _sqlite_begin(connection: Any) -> None:
    # a READ_ONLY connection begins DEFERRED: in WAL mode it then never waits for the writer
    read_only = connection.get_execution_options().get("mailgate_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _create_sequences(engine: Engine) -> None:
    """Make sure every number sequence has its row, so reservations only ever lock and update."""
    with Session(engine) as session:
        existing = set(session.exec(select(NumberSequence.name)))
        for name in NUMBERED:
            if name not in existing:
                session.add(NumberSequence(name=name, next_value=1))
        try:
            session.commit()
        except IntegrityError:  # another process created them at the same moment
            session.rollback()


# the connection ``batch_transaction`` lends to the transactions of the current task (or thread)
_HELD: ContextVar[Connection | None] = ContextVar("mailgate_batch_connection", default=None)


@contextmanager
def batch_transaction(
    engine: Engine, check: Callable[[Connection], None] | None = None, *, optimistic: bool = False
) -> Iterator[None]:
    """Within this block, each ``transaction(engine)`` of this task is a savepoint of one transaction.

    ``check`` runs first in that transaction (the service's lease fence); what it raises ends the
    block before anything is done, and nothing is committed.

    For a batch of messages (group commit): each message's work still succeeds or fails on its own
    (a failure rolls back to its savepoint), but the batch is committed once, when the block ends,
    on one connection; if the block raises, or the commit fails, nothing of the batch is kept.
    The caller must not acknowledge any message of the batch before the block has ended.

    On PostgreSQL the block runs in pipeline mode (engine.storage.direct.pipelined): a message's
    writes are sent without waiting, and waited for once, when its savepoint ends. With
    ``optimistic`` they are not waited for there either, only where something reads and at the
    commit, so that the server works on one message while this process works on the next; a
    database error (not an outage) then raises ``BatchNotSettled`` with nothing kept, and the
    caller runs the batch again without ``optimistic``.
    """
    try:
        connection = engine.connect()
    except OperationalError as exc:  # the database, not a message: the caller retries later
        raise DatabaseError(f"database unavailable: {getattr(exc, 'orig', None) or exc}") from None
    token = _HELD.set(connection)
    failure: BaseException | None = None
    try:
        with connection.begin():
            if check is not None:
                check(connection)
            try:
                with pipelined(connection, optimistic=optimistic):
                    yield
            except BaseException as exc:
                failure = exc
                raise
    except BatchNotSettled:
        raise
    except DBAPIError as exc:
        if optimistic and not is_outage(exc):  # at the commit: one of the messages' writes failed
            raise BatchNotSettled(exc) from None
        if not isinstance(exc, OperationalError):
            raise
        if failure is not None:  # a rollback on a lost connection: the block's own failure says why
            raise failure from None
        raise DatabaseError(f"database unavailable: {getattr(exc, 'orig', None) or exc}") from None
    finally:
        _HELD.reset(token)
        connection.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error.

    Inside ``batch_transaction`` it is a savepoint: "committed" means released into the batch,
    which is committed (or not) as a whole when that block ends.
    """
    held = _HELD.get()
    if held is not None and held.engine is engine and held.in_transaction():
        session = Session(held, expire_on_commit=False, join_transaction_mode="create_savepoint")
    else:
        held = None
        session = Session(engine, expire_on_commit=False)
    batch = pipelined_batch() if held is not None else None
    mark = batch.mark() if batch is not None else (0, 0)
    optimistic = batch is not None and batch.optimistic
    with session:
        try:
            yield session
            if held is not None:  # a savepoint: what it sent must have worked before it is done
                session.flush()
                if not optimistic:  # else at the next read or the commit (batch_transaction)
                    settle(held)
            session.commit()
        except BaseException as exc:
            if batch is not None:
                batch.undo(mark)
            if optimistic and isinstance(exc, DBAPIError) and not is_outage(exc):
                with suppress(DBAPIError):  # the batch is rolled back whole anyway
                    session.rollback()
                raise BatchNotSettled(exc) from None  # whose error it is is not known here
            try:
                session.rollback()
            except DBAPIError:  # the connection is gone (cut, or its server did not answer): say why
                raise exc from None
            raise
