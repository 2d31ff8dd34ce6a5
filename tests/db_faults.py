"""Real database failures for tests, raised by the database itself through triggers on the call table.

A new call whose summary (the mail's subject) contains:

- ``POISON``: the insert fails with an error that is not a connection failure: on PostgreSQL
  SQLSTATE 54000 (program_limit_exceeded, an OperationalError, as a too-long index row raises);
  on SQLite "integer overflow" (an OperationalError, SQLITE_ERROR);
- ``CONSTRAINT``: the insert fails with a constraint error that is not a duplicate ledger key
  (PostgreSQL 23514, SQLite RAISE(ABORT)): an IntegrityError;
- ``SEVER`` (PostgreSQL only): the database server ends the connection in the middle of the
  message (pg_terminate_backend on itself): a connection failure, an outage.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

POISON = "poison"
CONSTRAINT = "constraint"
SEVER = "sever"

_POSTGRES = [
    """
    CREATE FUNCTION mailgate_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.summary LIKE '%sever%' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
      END IF;
      IF NEW.summary LIKE '%poison%' THEN
        RAISE EXCEPTION 'index row size 3016 exceeds btree version 4 maximum 2704 (test trigger)'
          USING ERRCODE = '54000';
      END IF;
      IF NEW.summary LIKE '%constraint%' THEN
        RAISE EXCEPTION 'check constraint failed (test trigger)' USING ERRCODE = '23514';
      END IF;
      RETURN NEW;
    END $$
    """,
    'CREATE TRIGGER mailgate_test_fail BEFORE INSERT ON "call" '
    "FOR EACH ROW EXECUTE FUNCTION mailgate_test_fail()",
]
_SQLITE = [
    "CREATE TRIGGER mailgate_test_poison BEFORE INSERT ON call WHEN NEW.summary LIKE '%poison%' "
    "BEGIN SELECT abs(-9223372036854775807 - 1); END",
    "CREATE TRIGGER mailgate_test_constraint BEFORE INSERT ON call WHEN NEW.summary LIKE '%constraint%' "
    "BEGIN SELECT RAISE(ABORT, 'check constraint failed (test trigger)'); END",
]


def sqlite_triggers() -> list[str]:
    """The SQLite statements, for a test that opens the file with sqlite3 itself."""
    return list(_SQLITE)


def install_failing_triggers(engine: Engine) -> None:
    """Create the triggers in the (opened, schema created) database."""
    statements = _POSTGRES if engine.dialect.name == "postgresql" else _SQLITE
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
