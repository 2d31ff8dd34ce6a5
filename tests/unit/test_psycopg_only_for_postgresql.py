"""A process on SQLite never imports psycopg (about 40 ms of every start-up); one on PostgreSQL does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_IMPORTS_AFTER = """
import sys
import engine.cli, engine.service.runner, engine.service.watcher
from sqlalchemy import text
from engine.storage.db import open_database
engine = open_database(sys.argv[1])
if sys.argv[1].startswith("sqlite"):
    with engine.connect() as connection:
        connection.execute(text("select 1"))
print("psycopg" in sys.modules)
"""


def _imports_psycopg(url: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER, url], capture_output=True, text=True, check=True
    )
    return done.stdout.strip() == "True"


def test_a_process_on_sqlite_does_not_import_psycopg(tmp_path: Path) -> None:
    assert not _imports_psycopg(f"sqlite:///{tmp_path / 'desk.sqlite'}")


def test_a_process_on_postgresql_imports_psycopg_for_its_guarded_connection() -> None:
    # making the engine is enough (no connection is opened): the guarded class is built then
    assert _imports_psycopg("postgresql://postgres@127.0.0.1:5432/postgres")
