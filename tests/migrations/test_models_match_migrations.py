"""Every model change ships with its migration: the revisions build exactly the models' schema.

If one of these fails after you changed engine/storage/models.py (or another table), write the
revision: ``.venv/bin/python scripts/new_revision.py "what it changes"`` (see docs/architecture.md).
"""

from __future__ import annotations

import re
from pathlib import Path

from migration_helpers import create_as_0bdbdc9, migrate_to
from sqlalchemy import text
from sqlalchemy.engine import Connection

from engine.storage.db import create_database_engine
from engine.storage.revisions import MIGRATIONS_DIR, model_differences, script_directory
from engine.storage.schema import FIRST_REVISION, head_revision


def differences_after_migrating(url: str) -> list[object]:
    """Build the database at ``url`` by running every revision, then compare it with the models."""
    migrate_to(url, "head")
    engine = create_database_engine(url, foreign_keys=False)
    try:
        with engine.connect() as connection:
            return model_differences(connection)
    finally:
        engine.dispose()


def test_the_revisions_build_exactly_the_models_schema(db_url: str) -> None:
    differences = differences_after_migrating(db_url)
    assert differences == [], (
        "the models differ from what the migrations build; add a revision "
        f"(scripts/new_revision.py): {differences}"
    )


def test_a_model_change_without_a_migration_is_detected(sqlite_url: str) -> None:
    migrate_to(sqlite_url, "head")
    engine = create_database_engine(sqlite_url, foreign_keys=False)
    try:
        with engine.begin() as connection:  # as if the model had gained person.take_over unmigrated
            connection.execute(text("ALTER TABLE person DROP COLUMN take_over"))
            differences = model_differences(connection)
    finally:
        engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in differences if isinstance(d, tuple)] == [
        ("add_column", "person", "take_over")
    ]


def test_the_revisions_are_r1_to_rn_in_one_line_and_the_head_is_the_highest() -> None:
    scripts = script_directory()
    assert scripts.get_heads() == [head_revision()], "one line of revisions: renumber yours after a rebase"
    chain = [script.revision for script in scripts.walk_revisions()]
    assert chain == [f"r{n}" for n in range(len(chain), 0, -1)], chain
    for script in scripts.walk_revisions():
        number = int(script.revision[1:])
        assert script.down_revision == (f"r{number - 1}" if number > 1 else None)
        assert script.path is not None
        assert re.fullmatch(rf"{script.revision}_[a-z0-9_]+\.py", script.path.rsplit("/", 1)[-1])
        assert (script.doc or "").strip(), f"{script.revision} says what it changes in its docstring"
    assert (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()


def catalog(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
    """The schema as the database's own catalog tells it (columns, types, keys, indexes, constraints)."""
    if connection.dialect.name == "sqlite":
        return _sqlite_catalog(connection)
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, ordinal_position "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name != 'alembic_version'",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = 'public' AND tablename != 'alembic_version'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
        "AND conrelid::regclass::text != 'alembic_version'",
    }
    return {
        name: sorted(tuple(row) for row in connection.execute(text(sql))) for name, sql in queries.items()
    }


def _sqlite_catalog(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = connection.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('alembic_version')"
    ).scalars()
    described: dict[str, list[tuple[object, ...]]] = {"columns": [], "foreign_keys": [], "indexes": []}
    for table in tables:
        quoted = f'"{table}"'
        for column in connection.exec_driver_sql(f"PRAGMA table_info({quoted})"):
            described["columns"].append((table, *column))
        for key in connection.exec_driver_sql(f"PRAGMA foreign_key_list({quoted})"):
            described["foreign_keys"].append((table, *key[2:]))  # its id and seq follow declaration order
        for index in connection.exec_driver_sql(f"PRAGMA index_list({quoted})"):
            columns = connection.exec_driver_sql(f'PRAGMA index_xinfo("{index[1]}")').all()
            described["indexes"].append((table, *index[1:], *(column[2] for column in columns)))
    sql = connection.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    described["index_sql"] = [(name, re.sub(r"\s+", " ", text_)) for name, text_ in sql]
    return {name: sorted(rows, key=repr) for name, rows in described.items()}


def test_r1_is_exactly_the_schema_0bdbdc9_made(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, FIRST_REVISION)
    engine = create_database_engine(db_url)
    try:
        with engine.begin() as connection:
            migrated = catalog(connection)
            if connection.dialect.name == "postgresql":  # the same database, emptied for the second way
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    made_url = f"sqlite:///{tmp_path}/made-by-0bdbdc9.sqlite" if db_url.startswith("sqlite") else db_url
    create_as_0bdbdc9(made_url)
    engine = create_database_engine(made_url)
    try:
        with engine.connect() as connection:
            made = catalog(connection)
    finally:
        engine.dispose()
    assert migrated == made
