"""The revisions mailgate ships, as Alembic sees them: where they are, how they run, what each leaves.

Also the adoption of a database made before schema versions (``adopt_unversioned``), which
``engine.storage.db.open_database`` calls (lazily: it needs Alembic) for an unversioned database.
Upgrading a database is ``engine.storage.migrate``. This module opens no database of the user's.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from engine.storage import console  # noqa: F401  (its tables join the schema: opening a database does not add them)
from engine.storage.schema import FIRST_REVISION, SchemaVersionError, stamp

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# r1 declared this index; databases made by mailgate before it did not have it yet
_R1_LATE_INDEX = "CREATE INDEX IF NOT EXISTS ix_person_email_lower ON person (lower(email))"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for mailgate's revisions, running them on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """SQLModel's types written as the plain SQLAlchemy types they are: revisions never import sqlmodel."""
    if kind == "type" and isinstance(item, AutoString):
        return f"sa.String(length={item.length})" if item.length else "sa.String()"
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _reflectable_on_sqlite(item: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out expression indexes, which SQLite's reflection cannot see, when comparing with the models."""
    return kind != "index" or all(isinstance(expression, Column) for expression in item.expressions)


def context_options(connection: Connection) -> dict[str, Any]:
    """How revisions run on ``connection`` and how autogenerate compares and writes them (env.py uses these).

    Batch mode, because SQLite cannot alter most of a table in place (the table is rebuilt);
    PostgreSQL runs the same operations as plain ALTERs.
    """
    options: dict[str, Any] = {
        "target_metadata": SQLModel.metadata,
        "render_as_batch": True,
        "render_item": _render_item,
        "compare_type": True,
    }
    if connection.dialect.name == "sqlite":
        options["include_object"] = _reflectable_on_sqlite
    return options


def model_differences(connection: Connection) -> list[Any]:
    """What the database lacks to match the models, as autogenerate sees it (empty: nothing is missing)."""
    context = MigrationContext.configure(connection, opts=context_options(connection))
    with warnings.catch_warnings():  # SQLite's expression indexes: left out knowingly (see above)
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        differences: list[Any] = compare_metadata(context, SQLModel.metadata)
    return differences


def script_directory() -> ScriptDirectory:
    """The revisions this mailgate ships."""
    return ScriptDirectory.from_config(alembic_config())


@dataclass(frozen=True)
class Revision:
    """One schema revision: its id, the one it follows, and what it changes."""

    revision: str
    down_revision: str | None
    message: str


def history() -> list[Revision]:
    """Every revision this mailgate ships, newest first."""
    revisions = []
    for script in script_directory().walk_revisions():
        down = script.down_revision
        message = (script.doc or "").strip().splitlines()
        revisions.append(
            Revision(script.revision, down if isinstance(down, str) else None, message[0] if message else "")
        )
    return revisions


@functools.cache
def revision_columns(revision: str) -> dict[str, frozenset[str]]:
    """The tables and their columns as ``revision`` leaves them (built in an in-memory SQLite)."""
    engine = create_engine("sqlite://")  # in memory; foreign keys not enforced, as migrations need
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
            inspector = inspect(connection)
            return {
                table: frozenset(column["name"] for column in inspector.get_columns(table))
                for table in inspector.get_table_names()
                if table != "alembic_version"
            }
    finally:
        engine.dispose()


def unversioned_differences(connection: Connection) -> list[str]:
    """How a database without a version table differs from r1 (nothing: it is r1, made before versions)."""
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    differences = []
    for table, columns in sorted(revision_columns(FIRST_REVISION).items()):
        if table not in present:
            differences.append(f"no table {table}")
            continue
        actual = {column["name"] for column in inspector.get_columns(table)}
        differences += [f"no column {table}.{name}" for name in sorted(columns - actual)]
        differences += [f"an unknown column {table}.{name}" for name in sorted(actual - columns)]
    return differences


def adopt_unversioned(connection: Connection) -> str:
    """Stamp an unversioned database that holds r1's tables as r1; refuse any other (inside a transaction)."""
    differences = unversioned_differences(connection)
    if differences:
        shown = "; ".join(differences[:5]) + ("; …" if len(differences) > 5 else "")
        raise SchemaVersionError(
            "database has mailgate's tables but no schema version, and they are not those of the first "
            f"versioned schema ({FIRST_REVISION}, mailgate 0.1.0): {shown}. It was made by an older "
            "development version and cannot be upgraded; make a new database (mailgate init) and load "
            "its people and items again (mailgate db load)"
        )
    connection.execute(text(_R1_LATE_INDEX))
    stamp(connection, FIRST_REVISION)
    return FIRST_REVISION
