"""Telling a database outage from a database error that one message caused.

Contract: ``is_outage(exc)`` is True only when the database cannot be reached or cannot work for
now: the connection failed or was lost (SQLSTATE class 08, the driver's own connection errors),
the server is shutting down or refusing connections (57P0x, 53300), a transient conflict that a
retry resolves (40001, 40P01, 55P03), or SQLite's file is locked, unreadable, read-only or full.
Every other database error is taken to be caused by the values of the statement, that is by the
message in hand: the pipeline quarantines that message alone and the batch goes on. If even its
quarantine cannot be written, the pipeline treats that as an outage after all (engine/pipeline.py).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

_OUTAGE_SQLSTATE_CLASSES = frozenset({"08"})  # connection exception
_OUTAGE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57P04",  # database_dropped
        "57P05",  # idle_session_timeout
        "53300",  # too_many_connections
        "40001",  # serialization_failure: a retry resolves it
        "40P01",  # deadlock_detected: a retry resolves it
        "55P03",  # lock_not_available: a retry resolves it
    }
)
# sqlite3's error names (extended ones start with these): the file, not the statement, is the problem
_SQLITE_OUTAGES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_NOMEM",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_AUTH",
    "SQLITE_NOLFS",
)
_NO_SQLSTATE = object()


def is_outage(exc: BaseException) -> bool:
    """Whether a database error means the database is unavailable (retry later), not a bad message."""
    if isinstance(exc, DisconnectionError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", _NO_SQLSTATE)
    if isinstance(sqlstate, str):  # PostgreSQL (psycopg)
        return sqlstate[:2] in _OUTAGE_SQLSTATE_CLASSES or sqlstate in _OUTAGE_SQLSTATES
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        return sqlite_name.startswith(_SQLITE_OUTAGES)
    # psycopg's errors without an SQLSTATE are raised by the driver itself: for OperationalError
    # and InterfaceError (the DB-API's names, wrapped by SQLAlchemy or not) that is a connection
    # that failed or was lost; other drivers alike
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return any(kind.__name__ in ("OperationalError", "InterfaceError") for kind in type(orig).__mro__)


def describe_database_error(exc: BaseException) -> str:
    """One line naming a database error: its SQLSTATE or SQLite error name, and the driver's message."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    text = " ".join(str(orig or exc).split())  # one line: PostgreSQL adds DETAIL and HINT lines
    return f"{code}: {text}" if code else text
