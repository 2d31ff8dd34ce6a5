"""How the ledger is read without an index of its own on the message key (schema revision r9)."""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.storage.db import transaction
from engine.storage.ledger import ledger_accounts
from engine.storage.models import LedgerEntry
from engine.storage.views import message_view


def _entries(engine: Engine, *rows: tuple[str, str]) -> None:
    with transaction(engine) as session:
        for account, key in rows:
            session.add(LedgerEntry(account=account, message_key=key, outcome="logged"))


def test_the_ledger_keeps_no_index_on_the_message_key_alone(engine: Engine) -> None:
    indexes = {index["name"] for index in inspect(engine).get_indexes("ledgerentry")}
    assert "ix_ledgerentry_message_key" not in indexes
    assert "ix_ledgerentry_account" in indexes  # the log's pages of one account, newest first


def test_the_ledgers_accounts_are_listed_once_each_in_order(engine: Engine) -> None:
    with Session(engine) as session:
        assert ledger_accounts(session) == []
    rows = [(f"desk-{n % 3}", f"m{n}@example.com") for n in range(30)]
    _entries(engine, *rows, ("a-first", "x@example.com"))
    with Session(engine) as session:
        assert ledger_accounts(session) == ["a-first", "desk-0", "desk-1", "desk-2"]


def test_message_show_finds_the_mail_in_every_account_and_under_a_reused_ids_own_key(engine: Engine) -> None:
    _entries(
        engine,
        ("desk-a", "same@example.com"),
        ("desk-b", "same@example.com"),
        ("desk-b", "same@example.com#0123abcd"),  # a different mail reusing the Message-ID
        ("desk-b", "other@example.com"),
        ("desk-c", "samex@example.com"),
    )
    with Session(engine) as session:
        found = message_view(session, "<same@example.com>", [])
    assert sorted((view["account"], view["message_key"]) for view in found) == [
        ("desk-a", "same@example.com"),
        ("desk-b", "same@example.com"),
        ("desk-b", "same@example.com#0123abcd"),
    ]


def test_message_show_reads_the_ledger_through_the_index_of_account_and_key(sqlite_url: str) -> None:
    from engine.storage.db import open_database

    engine = open_database(sqlite_url)
    _entries(engine, *[(f"desk-{n % 4}", f"m{n}@example.com") for n in range(200)])
    plans: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def explain(connection, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM ledgerentry" in statement and not statement.startswith(("EXPLAIN", "WITH")):
            plan = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            plans.append(" | ".join(str(row[-1]) for row in plan))

    with Session(engine) as session:
        [view] = message_view(session, "m17@example.com", [])
    engine.dispose()
    assert view["account"] == "desk-1"
    ledger_plans = [plan for plan in plans if "ledgerentry" in plan]
    assert ledger_plans, plans
    for plan in ledger_plans:
        assert "SCAN ledgerentry" not in plan, plan
        assert "sqlite_autoindex_ledgerentry" in plan, plan
