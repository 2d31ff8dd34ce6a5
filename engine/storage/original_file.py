"""The originals' own SQLite file beside a SQLite database: ``desk.originals.sqlite`` for ``desk.sqlite``.

A kept original is the bulk of what a message writes (a mail with attachments is most of a
megabyte), and only ``mailgate message show`` and the console read it again. In a file of its own
it stays out of the desk's working set, its writes do not wait for the desk's single writer (nor
make it wait), and the service's parse worker writes it while it reads the message
(``engine.mail.parse_worker``), on the other core, instead of the service's process. A batch's
originals are committed together before the worker's last answer for the batch leaves it, so
before the ledger entry that links to any of them.

Rows are keyed by (account, message key, fingerprint): the worker writes before the ledger has
chosen the key (a mail reusing another's Message-ID is recorded as ``<key>#<fingerprint>``), and
the fingerprint tells such mails apart. A re-delivered mail (same key, same fingerprint) keeps the
first original. Only the standard library is used here, so the worker stays quick to start.
On PostgreSQL, and for a SQLite database in memory, originals stay in the database's
``originalmessage`` table (engine.storage.originals).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS original (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    message_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    message_id TEXT,
    received_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    compression TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (account, message_key, fingerprint)
);
CREATE INDEX IF NOT EXISTS original_received_at ON original (received_at);
"""
_INSERT = (
    "INSERT OR IGNORE INTO original (account, message_key, fingerprint, message_id, received_at, size,"
    " compression, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "account, message_key, fingerprint, message_id, received_at, size, compression, data"
# an original is mostly one blob of some kilobytes to megabytes: in pages of 16 KB instead of 4 it
# spans a quarter of the overflow pages, and keeping the benchmark's 2,000 originals costs about
# half the CPU (0.047 s against 0.082), in the WAL and again at its checkpoints
PAGE_SIZE = 16384


class StoredOriginal(NamedTuple):
    """One row of the file: whose mail, its keys, when it came, and its bytes as stored."""

    account: str
    message_key: str
    fingerprint: str
    message_id: str | None
    received_at: datetime
    size: int
    compression: str
    data: bytes


def _stored(rows: Iterable[tuple[Any, ...]]) -> list[StoredOriginal]:
    """Rows selected as ``id, {_COLUMNS}``, as ``StoredOriginal`` values."""
    return [
        StoredOriginal(a, k, f, m, datetime.fromisoformat(t), s, c, bytes(d))
        for _, a, k, f, m, t, s, c, d in rows
    ]


@functools.lru_cache(maxsize=64)  # asked for every message a service's process keeps itself
def originals_file_for(database: str | None) -> Path | None:
    """The originals' file of a SQLite database file (absolute); None for memory or another database."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).absolute()
    return path.with_name(f"{path.stem}.originals{path.suffix or '.sqlite'}")


def timestamp(moment: datetime) -> str:
    """A naive UTC datetime as stored (the form SQLAlchemy writes to SQLite, which sorts as time)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class OriginalsFile:
    """One connection to an originals' file; every ``keep`` is committed when it returns, except
    between ``begin`` and ``commit`` (or ``rollback``), which make the rows kept between them one
    transaction (the parse worker keeps a batch's originals in one).

    Contract: ``keep`` never replaces a row; ``find`` gives rows oldest first; ``purge`` drops rows
    received before a moment. Several processes may use the file at once (WAL, a busy timeout).
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise FileNotFoundError(path)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file's only: WAL fixes it after
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if create:
            self._db.executescript(_SCHEMA)

    def keep(
        self,
        *,
        account: str,
        key: str,
        fingerprint: str,
        message_id: str | None,
        received_at: datetime,
        size: int,
        compression: str,
        data: bytes,
    ) -> None:
        """Store one original (committed on return); a row for the same mail already there stays."""
        values = (account, key, fingerprint, message_id, timestamp(received_at), size, compression, data)
        self._db.execute(_INSERT, values)

    def begin(self) -> None:
        """Start a transaction: the rows kept until ``commit`` are committed together."""
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the transaction ``begin`` started."""
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        """End the transaction ``begin`` started, keeping none of its rows (if it is still open)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def find(self, keys: Iterable[str], key_pairs: Iterable[tuple[str, str]] = ()) -> list[StoredOriginal]:
        """The rows whose message key is one of ``keys``, or (key, fingerprint) one of ``key_pairs``."""
        keys, pairs = sorted(set(keys)), sorted(set(key_pairs))
        found: dict[int, tuple[Any, ...]] = {}
        if keys:
            marks = ", ".join("?" * len(keys))
            sql = f"SELECT id, {_COLUMNS} FROM original WHERE message_key IN ({marks})"
            found.update((row[0], row) for row in self._db.execute(sql, keys))
        for key, fingerprint in pairs:
            sql = f"SELECT id, {_COLUMNS} FROM original WHERE message_key = ? AND fingerprint = ?"
            found.update((row[0], row) for row in self._db.execute(sql, (key, fingerprint)))
        return _stored(sorted(found.values(), key=lambda row: (row[5], row[0])))  # received, then written

    def rows(self) -> list[StoredOriginal]:
        """Every row, oldest first."""
        return _stored(self._db.execute(f"SELECT id, {_COLUMNS} FROM original ORDER BY received_at, id"))

    def purge(self, before: datetime) -> int:
        """Drop the rows received before ``before``; how many were dropped."""
        return self._db.execute("DELETE FROM original WHERE received_at < ?", (timestamp(before),)).rowcount

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
