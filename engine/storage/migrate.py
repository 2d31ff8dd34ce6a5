"""Schema upgrades with Alembic: ``mailgate db upgrade``, ``db current``, ``db history``, ``run --upgrade``.

The revisions live in ``engine/storage/migrations/`` (shipped in the wheel); its env.py runs them on
a connection opened here, inside one transaction that also moves the version stamp: an upgrade
that fails leaves the database at the revision it had. On SQLite, foreign keys are not enforced
while tables are rebuilt (batch mode) and are checked (``PRAGMA foreign_key_check``) before the
commit. Which databases are opened, created or refused is told in ``engine.storage.schema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alembic import command
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from engine.config.database import FOR_MIGRATIONS
from engine.errors import MailgateError
from engine.storage.db import DatabaseError, create_database_engine, shown_url
from engine.storage.revisions import (
    MIGRATIONS_DIR,
    Revision,
    adopt_unversioned,
    alembic_config,
    history,
    unversioned_differences,
)
from engine.storage.schema import (
    FIRST_REVISION,
    SchemaVersionError,
    head_revision,
    read_schema_state,
    revision_number,
    stamp,
    version_problem,
)

__all__ = ["MIGRATIONS_DIR", "UpgradeReport", "describe_current", "history", "upgrade_database"]


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
    engine = create_database_engine(url, foreign_keys=False, timeouts=FOR_MIGRATIONS)
    shown = shown_url(engine)
    head = head_revision()
    try:
        with engine.begin() as connection:
            state = read_schema_state(connection, _our_tables)
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


def _our_tables() -> set[str]:
    return set(SQLModel.metadata.tables)


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
            state = read_schema_state(connection, _our_tables)
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
