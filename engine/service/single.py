"""One ``mailgate run`` per SQLite file: an OS lock on ``<database>.run-lock`` beside it.

SQLite is the single-process embedded database: two services on one file would only race. The
lock is an ``flock`` on a file next to the database, taken for as long as the service runs and
dropped by the operating system when the process ends, however it ends (SIGKILL included).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from engine.errors import MailgateError


class AlreadyRunning(MailgateError):
    """Another ``mailgate run`` already works this SQLite database."""


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database file."""
    return database.with_name(database.name + ".run-lock")


@contextmanager
def only_service(engine: Engine) -> Iterator[bool]:
    """Hold the database's run lock while the block runs (yields True); no lock (False) off SQLite.

    Raises ``AlreadyRunning`` (naming the holder's pid) if another process holds it.
    """
    database = engine.url.database
    if not engine.url.drivername.startswith("sqlite") or database in (None, "", ":memory:"):
        yield False
        return
    path = lock_path(Path(database).resolve())
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another mailgate run (pid {holder}) is already using the SQLite database {database}; "
                "SQLite serves one service at a time (several need PostgreSQL: see docs/scaling.md)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(descriptor)  # drops the lock
