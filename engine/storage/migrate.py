"""Schema upgrades with Alembic: ``mailgate db upgrade``, ``db current``, ``db history``, ``run --upgrade``.

The revisions live in ``engine/storage/migrations/`` (shipped in the wheel); its env.py runs them on
a connection opened here, inside one transaction that also moves the version stamp: an upgrade
that fails leaves the database at the revision it had. On SQLite, foreign keys are not enforced
while tables are rebuilt (batch mode) and are checked (``PRAGMA foreign_key_check``) before the
commit. Which databases are opened, created or refused is told in ``engine.storage.schema``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from engine.errors import MailgateError
from engine.storage.db import DatabaseError, create_database_engine, shown_url
from engine.storage.schema import (
    FIRST_REVISION,
    SchemaVersionError,
    head_revision,
    read_schema_state,
    revision_number,
    stamp,
    version_problem,
)

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
    engine = create_database_engine("sqlite://", foreign_keys=False)
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


@dataclass
class UpgradeReport:
    """What ``upgrade_database`` did."""

    database: str
    before: str | None  # the revision found; None if the database was empty
    after: str
    adopted: bool = False  # an unversioned r1 database was stamped r1 first
    applied: list[Revision] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report for a person, one line per step."""
        if self.before is None:
            return [f"created the database schema at {self.after} (head) in {self.database}"]
        lines = []
        if self.adopted:
            lines.append(f"{self.database} has no schema version but r1's tables: recorded it as r1")
        lines += [f"applied {r.revision}: {r.message}" for r in self.applied]
        if self.applied:
            lines.append(f"upgraded {self.database} from {self.before} to {self.after} (head)")
        else:
            lines.append(f"{self.database} is at {self.after} (head): nothing to upgrade")
        return lines


def upgrade_database(url: str) -> UpgradeReport:
    """Bring the database at ``url`` to the head revision, in one transaction; create it if empty.

    Raises ``SchemaVersionError`` for a database newer than this mailgate or not one it knows, and
    ``DatabaseError`` if the upgrade fails (the database is then left as it was).
    """
    engine = create_database_engine(url, foreign_keys=False)
    shown = shown_url(engine)
    head = head_revision()
    try:
        with engine.begin() as connection:
            state = read_schema_state(connection, set(SQLModel.metadata.tables))
            if state.empty:
                SQLModel.metadata.create_all(connection)
                stamp(connection, head)
                return UpgradeReport(shown, None, head)
            report = UpgradeReport(shown, state.revision, head)
            if state.revision is None:
                report.before, report.adopted = adopt_unversioned(connection), True
            before = report.before
            assert before is not None
            number = revision_number(before)
            if number is None or number > (revision_number(head) or 0):
                raise SchemaVersionError(version_problem(before) or before)
            report.applied = [r for r in reversed(history()) if (revision_number(r.revision) or 0) > number]
            command.upgrade(alembic_config(connection), "head")
            _check_foreign_keys(connection)
    except MailgateError:
        raise
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip()
        raise DatabaseError(f"cannot upgrade database {shown}: {reason}; it was left as it was") from None
    finally:
        engine.dispose()
    return report


def _check_foreign_keys(connection: Connection) -> None:
    """On SQLite, refuse to commit an upgrade that left a row pointing at nothing."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        where = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:5])
        raise DatabaseError(f"the upgrade would leave rows pointing at nothing ({where})")


def describe_current(url: str) -> str:
    """The database's schema version and what it means for this mailgate, in one line; writes nothing."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            state = read_schema_state(connection, set(SQLModel.metadata.tables))
            if state.empty:
                return f"none: the database is empty (it is created at {head_revision()} when first used)"
            if state.revision is None:
                if unversioned_differences(connection):
                    return "none: mailgate's tables without a schema version, not r1's: cannot be upgraded"
                problem = version_problem(FIRST_REVISION)
                return "none: made by mailgate 0.1.0 before schema versions, so r1 (recorded when opened)" + (
                    f"; {problem.removeprefix('database schema is r1, ')}" if problem else ""
                )
            problem = version_problem(state.revision)
            if problem is None:
                return f"{state.revision} (head)"
            return f"{state.revision}: {problem.removeprefix(f'database schema is {state.revision}, ')}"
    except MailgateError:
        raise
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip()
        raise DatabaseError(f"cannot open database {shown_url(engine)}: {reason}") from None
    finally:
        engine.dispose()
