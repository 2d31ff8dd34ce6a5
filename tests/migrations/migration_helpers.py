"""Helpers of the schema-migration tests (their fixture, ``r1_rows``, is in conftest.py).

- ``migrate_to(url, revision)``: an empty database built by running the revisions up to ``revision``.
- ``create_as_0bdbdc9(url)``: an empty database given its schema by mailgate 0.1.0's own code
  (a copy of its models in tests/fixtures/schema, run in a process of its own), no version table.
- ``load_r1_rows(url, rows)``: inserts the rows 0bdbdc9's code wrote running the demo and a few
  more mails (tests/fixtures/schema/r1_rows.json, made by make_r1_rows.sh; the ``r1_rows`` fixture).
- ``recorded_revision(url)``, ``set_recorded_revision(url, revision)``: the version table's row;
  ``next_revision()``: the one after the newest shipped (a newer mailgate's).
- ``desk_runtime(url, folder)``: a Runtime on that database with the account that wrote those rows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic import command
from schema_rows import load_rows
from sqlalchemy import text

from engine.commands.starter import STARTER_CONFIG
from engine.config.model import load_config
from engine.runtime import Runtime
from engine.storage.db import create_database_engine
from engine.storage.revisions import alembic_config
from engine.storage.schema import head_revision, revision_number

SCHEMA_FIXTURES = Path(__file__).parents[1] / "fixtures" / "schema"
DEMO_MAILBOX = Path(__file__).parents[2] / "engine" / "demo" / "mailbox"

Rows = dict[str, list[dict[str, Any]]]


def migrate_to(url: str, revision: str) -> None:
    """Run the revisions up to ``revision`` on the database at ``url``, as Alembic does."""
    engine = create_database_engine(url, foreign_keys=False)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def create_as_0bdbdc9(url: str) -> None:
    """Give the empty database at ``url`` the schema mailgate 0.1.0 (commit 0bdbdc9) made itself."""
    script = SCHEMA_FIXTURES / "create_0bdbdc9_database.py"
    done = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def next_revision() -> str:
    """The revision after the newest one shipped."""
    return f"r{(revision_number(head_revision()) or 0) + 1}"


def set_recorded_revision(url: str, revision: str) -> None:
    """Write ``revision`` into the database's version table, as a newer mailgate would."""
    engine = create_database_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def recorded_revision(url: str) -> str | None:
    """The revision in the database's version table (None if it has none)."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            try:
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:
                return None
    finally:
        engine.dispose()


def load_r1_rows(url: str, rows: Rows) -> None:
    """Insert the r1 rows into the database at ``url`` (whose schema is r1's)."""
    engine = create_database_engine(url)
    try:
        with engine.begin() as connection:
            load_rows(connection, rows)
    finally:
        engine.dispose()


def desk_runtime(url: str, folder: Path) -> Runtime:
    """A Runtime on ``url`` with the demo's account (helpdesk, default pack); opening checks the schema."""
    config = STARTER_CONFIG.replace("sqlite:///mailgate.sqlite", url)
    config = config.replace("rule_pack: local", "rule_pack: default")
    path = folder / "mailgate.yaml"
    path.write_text(config, encoding="utf-8")
    return Runtime(load_config(path))
