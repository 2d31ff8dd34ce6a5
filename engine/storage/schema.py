"""The schema's version, checked every time the database is opened; a brand-new database made at head.

Every change to the tables ships as an Alembic revision in ``engine/storage/migrations/versions/``,
named r1, r2, … in order (file ``rN_what_it_does.py``); the highest is the schema this mailgate
needs, its head. A database records its revision in Alembic's ``alembic_version`` table.

Opening a database (``engine.storage.db.open_database``) never migrates it. The database is:

- empty (none of mailgate's tables): created from the models at head and stamped with it, since
  there is nothing to migrate;
- without a version table but holding r1's tables (made by mailgate 0.1.0, commit 0bdbdc9, before
  versions existed): recognised as r1 and stamped so (``engine.storage.revisions.adopt_unversioned``);
- at head: opened; older: refused with "run mailgate db upgrade"; newer: refused.

This module does not import Alembic (every ``mailgate deliver`` opens the database);
upgrades are in ``engine.storage.migrate``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from engine.errors import MailgateError

VERSIONS_DIR = Path(__file__).with_name("migrations") / "versions"
FIRST_REVISION = "r1"
VERSION_TABLE = "alembic_version"

_REVISION = re.compile(r"r([1-9][0-9]*)")
_REVISION_FILE = re.compile(r"(r[1-9][0-9]*)_\w+\.py")

# Alembic's own definition of its version table, so that a new database is stamped without it
VERSION = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)


class SchemaVersionError(MailgateError):
    """The database's schema is not the one this mailgate needs: older, newer, or not one it knows.

    Not a ``DatabaseError``: waiting and retrying cannot fix it, an admin must act.
    """


def revision_number(revision: str) -> int | None:
    """The N of a revision ``rN``; None for a name that is not one of ours."""
    match = _REVISION.fullmatch(revision)
    return int(match.group(1)) if match else None


@functools.cache
def head_revision() -> str:
    """The newest revision this mailgate ships (the highest ``rN`` of the versions folder)."""
    numbers = [
        revision_number(match.group(1))
        for path in VERSIONS_DIR.iterdir()
        if (match := _REVISION_FILE.fullmatch(path.name))
    ]
    return f"r{max(n for n in numbers if n is not None)}"


@dataclass(frozen=True)
class SchemaState:
    """What a database holds: its recorded revision, or (unversioned) whether it has any of our tables."""

    revision: str | None
    empty: bool = False


def read_schema_state(connection: Connection, our_tables: Callable[[], set[str]]) -> SchemaState:
    """The revision the database records; if none, whether it is empty of ``our_tables()``. Writes nothing.

    ``our_tables`` is called only for a database without a recorded revision.
    """
    present = set(inspect(connection).get_table_names())
    if VERSION_TABLE in present:
        revisions = list(connection.execute(select(VERSION.c.version_num)).scalars())
        if len(revisions) > 1:
            raise SchemaVersionError(
                f"database records several schema versions ({', '.join(sorted(revisions))}), "
                "which mailgate never does: its alembic_version table was changed by hand"
            )
        if revisions:
            return SchemaState(revisions[0])
    return SchemaState(None, empty=not present & our_tables())


def stamp(connection: Connection, revision: str) -> None:
    """Record ``revision`` as the database's schema version (creating the version table if needed)."""
    VERSION.create(connection, checkfirst=True)
    connection.execute(VERSION.delete())
    connection.execute(insert(VERSION).values(version_num=revision))


def version_problem(revision: str) -> str | None:
    """Why this mailgate cannot work on a database at ``revision`` (None: it is the head)."""
    head = head_revision()
    if revision == head:
        return None
    number, head_number = revision_number(revision), revision_number(head)
    assert head_number is not None
    if number is not None and number < head_number:
        return f"database schema is {revision}, this mailgate needs {head}: run mailgate db upgrade"
    if number is not None:
        return (
            f"database schema is {revision}, newer than this mailgate's {head}: a newer mailgate "
            "upgraded it; run that one (a schema is never downgraded)"
        )
    return f"database schema is {revision!r}, not a version mailgate knows (r1 to {head})"


def prepare_schema(
    engine: Engine, metadata: Callable[[], MetaData], adopt_unversioned: Callable[[Connection], str]
) -> None:
    """Check the database's schema version, or create the schema at head in an empty database.

    ``metadata`` gives every table of the schema; it is called only for a database that records
    no revision, so opening one at head needs no more of the models than the process uses.

    Raises ``SchemaVersionError`` unless the database is (now) at head. An unversioned database
    is given to ``adopt_unversioned`` (``engine.storage.revisions``), which stamps r1's tables as r1
    and refuses any other; then it is refused if r1 is not the head.
    """
    for attempt in (1, 2):
        creating = False
        try:
            with engine.begin() as connection:
                state = read_schema_state(connection, lambda: set(metadata().tables))
                if state.empty:
                    creating = True
                    metadata().create_all(connection)
                    stamp(connection, head_revision())
                    return
                revision = state.revision
                if revision is None:
                    revision = adopt_unversioned(connection)
        except DBAPIError:
            if not creating or attempt == 2:
                raise
            continue  # another process created the schema at the same moment: look again
        problem = version_problem(revision)
        if problem is not None:
            raise SchemaVersionError(problem)
        return
