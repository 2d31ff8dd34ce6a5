"""How mailgate sets up each SQLite connection (engine.storage.db)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from engine.storage.db import create_database_engine

ROWS, ROW_BYTES = 200, 2000  # about 100 pages: far past the 64 KB a journal keeps in memory by itself


def _sqlite_temporary_files() -> list[str]:
    """The SQLite temporary files this process holds open (SQLite unlinks them once opened; Linux)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "etilqs_" in target:
            found.append(target)
    return found


def test_a_savepoints_journal_stays_in_memory_instead_of_a_temporary_file(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'desk.sqlite'}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)")
            for number in range(ROWS):
                connection.execute(
                    text("INSERT INTO filler VALUES (:id, :data)"), {"id": number, "data": b"a" * ROW_BYTES}
                )
        with engine.connect() as connection, connection.begin():
            savepoint = connection.begin_nested()
            connection.exec_driver_sql(f"UPDATE filler SET data = zeroblob({ROW_BYTES})")
            assert _sqlite_temporary_files() == []
            savepoint.rollback()  # the journal in memory still undoes the savepoint's work
            kept = connection.exec_driver_sql(
                "SELECT count(*) FROM filler WHERE data = ?", (b"a" * ROW_BYTES,)
            )
            assert kept.scalar() == ROWS
    finally:
        engine.dispose()
