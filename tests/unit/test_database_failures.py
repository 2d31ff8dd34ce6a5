"""``is_outage`` tells a database that cannot work now from an error that one message caused.

Every error here is raised by the real driver against a real database, as the pipeline meets it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from engine.storage.failures import describe_database_error, is_outage


def sqlite_error(statement: str, database: Path) -> sqlite3.Error:
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        connection.close()
    raise AssertionError(f"{statement!r} did not fail")


def test_sqlite_lock_and_unopenable_file_are_outages_and_a_bad_value_is_not(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (k TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = sqlite_error("INSERT INTO t VALUES ('x')", database)
    finally:
        holder.rollback()
        holder.close()
    with pytest.raises(sqlite3.OperationalError) as unopenable:
        sqlite3.connect(tmp_path / "missing" / "db.sqlite")
    overflow = sqlite_error("SELECT abs(-9223372036854775807 - 1)", database)
    assert is_outage(locked) and is_outage(unopenable.value)
    assert isinstance(overflow, sqlite3.OperationalError) and not is_outage(overflow)
    assert describe_database_error(overflow) == "SQLITE_ERROR: integer overflow"


def postgres_error(admin: Engine, statement: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught, admin.connect() as connection:
        connection.execute(text(statement))
    return caught.value


@pytest.mark.postgres
def test_postgres_connection_failures_are_outages_and_a_too_long_index_row_is_not(
    pg_admin_engine: Engine,
) -> None:
    terminated = postgres_error(pg_admin_engine, "SELECT pg_terminate_backend(pg_backend_pid())")
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=5)
    too_long = postgres_error(
        pg_admin_engine,
        "CREATE TEMP TABLE t (k text); CREATE INDEX ON t (k); "
        "INSERT INTO t SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 100)",
    )
    out_of_range = postgres_error(pg_admin_engine, "SELECT abs((-9223372036854775807 - 1)::bigint)")
    assert is_outage(terminated) and is_outage(refused.value)
    assert not is_outage(too_long) and describe_database_error(too_long).startswith("54000: index row")
    assert not is_outage(out_of_range) and describe_database_error(out_of_range).startswith("22003: ")
