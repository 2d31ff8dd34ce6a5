"""Opening a database checks its schema version first: new ones are made at head, others are refused.

"Older" needs a revision older than the head: the tests make the head one higher than the newest
shipped revision (``head_revision`` patched), so a database at the real head is one revision behind.
"""

from __future__ import annotations

import pytest
from migration_helpers import create_as_0bdbdc9, next_revision, recorded_revision, set_recorded_revision
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from engine.storage import schema
from engine.storage.db import create_database_engine, open_database
from engine.storage.migrate import describe_current, upgrade_database
from engine.storage.schema import FIRST_REVISION, SchemaVersionError, head_revision


def indexes_of_person(engine: Engine) -> set[str]:
    """Index names from the catalog (reflection skips SQLite's expression indexes)."""
    catalog = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'person'"
    )
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(text(catalog))}


def test_a_brand_new_database_is_created_at_head_and_stamped(db_url: str) -> None:
    assert describe_current(db_url).startswith("none: the database is empty")
    open_database(db_url).dispose()
    assert recorded_revision(db_url) == head_revision()
    assert describe_current(db_url) == f"{head_revision()} (head)"


def test_a_database_at_an_older_revision_is_refused_with_run_db_upgrade(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_database(db_url).dispose()
    current, needed = head_revision(), next_revision()
    monkeypatch.setattr(schema, "head_revision", lambda: needed)
    with pytest.raises(SchemaVersionError) as refused:
        open_database(db_url)
    assert (
        str(refused.value)
        == f"database schema is {current}, this mailgate needs {needed}: run mailgate db upgrade"
    )
    assert recorded_revision(db_url) == current, "refusing writes nothing"


def test_a_database_at_a_newer_revision_is_refused(db_url: str) -> None:
    open_database(db_url).dispose()
    set_recorded_revision(db_url, next_revision())
    with pytest.raises(SchemaVersionError, match=rf"schema is {next_revision()}, newer than this mailgate's"):
        open_database(db_url)
    with pytest.raises(SchemaVersionError, match="newer than this mailgate's"):
        upgrade_database(db_url)
    assert recorded_revision(db_url) == next_revision(), "never downgraded"


def test_a_database_at_a_revision_mailgate_never_had_is_refused(sqlite_url: str) -> None:
    open_database(sqlite_url).dispose()
    set_recorded_revision(sqlite_url, "3f1c0ffee")
    with pytest.raises(SchemaVersionError, match="'3f1c0ffee', not a version mailgate knows"):
        open_database(sqlite_url)


def test_a_database_made_by_0bdbdc9_without_a_version_table_is_recognised_as_r1(db_url: str) -> None:
    create_as_0bdbdc9(db_url)
    assert describe_current(db_url).startswith("none: made by mailgate 0.1.0 before schema versions")
    if head_revision() == FIRST_REVISION:
        open_database(db_url).dispose()
    else:
        with pytest.raises(SchemaVersionError, match=f"schema is r1, this mailgate needs {head_revision()}"):
            open_database(db_url)
    assert recorded_revision(db_url) == FIRST_REVISION, "stamped r1 when first opened"


def test_a_0bdbdc9_database_made_before_the_lower_email_index_gets_it_when_recognised(db_url: str) -> None:
    create_as_0bdbdc9(db_url)
    engine = create_database_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_person_email_lower"))
        assert "ix_person_email_lower" not in indexes_of_person(engine)
        report = upgrade_database(db_url)
        assert report.adopted and report.after == head_revision()
        assert "ix_person_email_lower" in indexes_of_person(engine)
    finally:
        engine.dispose()


def test_tables_from_before_0bdbdc9_without_a_version_table_are_refused_and_left_alone(db_url: str) -> None:
    create_as_0bdbdc9(db_url)
    engine = create_database_engine(db_url)
    try:
        with engine.begin() as connection:  # as made by a development version before answered_address
            connection.execute(text("DROP INDEX ix_outboxmessage_answered_address"))
            connection.execute(text("ALTER TABLE outboxmessage DROP COLUMN answered_address"))
    finally:
        engine.dispose()
    assert "not r1's: cannot be upgraded" in describe_current(db_url)
    for attempt in (open_database, upgrade_database):
        with pytest.raises(SchemaVersionError) as refused:
            attempt(db_url)
        message = str(refused.value)
        assert "no schema version" in message and "no column outboxmessage.answered_address" in message
        assert "cannot be upgraded" in message
    engine = create_database_engine(db_url)
    try:
        assert "alembic_version" not in inspect(engine).get_table_names(), "nothing stamped"
    finally:
        engine.dispose()


def test_upgrading_an_empty_database_creates_it_at_head(db_url: str) -> None:
    report = upgrade_database(db_url)
    assert (report.before, report.after) == (None, head_revision())
    assert report.lines() == [f"created the database schema at {head_revision()} (head) in {report.database}"]
    assert recorded_revision(db_url) == head_revision()


def test_upgrading_a_database_at_head_changes_nothing(sqlite_url: str) -> None:
    open_database(sqlite_url).dispose()
    report = upgrade_database(sqlite_url)
    assert report.applied == [] and not report.adopted
    assert report.lines() == [f"{report.database} is at {head_revision()} (head): nothing to upgrade"]
