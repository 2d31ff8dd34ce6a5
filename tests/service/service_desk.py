"""A small installation for the service tests: a config file, a real SQLite file, fixtures loaded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from engine.config.model import load_config
from engine.runtime import Runtime
from engine.storage.db import transaction
from engine.storage.fixtures import load_fixtures
from engine.storage.models import Call, LedgerEntry
from engine.storage.status import AccountStatus, account_statuses

FIXTURES = """\
people:
  - {email: ada@example.com, name: Ada, user: true}
  - {email: grace@example.com, name: Grace, user: false, analyst: true}
"""

WAIT_LIMIT = 30.0  # every wait in these tests: poll until done, give up after this many seconds


def make_mail(number: int, subject: str | None = None, sender: str = "ada@example.com") -> bytes:
    """A plain new-call mail with Message-ID ``<m{number}@example.com>``."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@example.com"
    msg["Subject"] = subject or f"Printer {number} broken"
    msg["Message-ID"] = f"<m{number}@example.com>"
    msg.set_content(f"Printer number {number} prints blank pages.")
    return msg.as_bytes()


def account_yaml(name: str, connector: str, *, poll: float = 60, active: bool = True) -> str:
    """One entry of the config's ``accounts:`` list (``connector`` is a YAML flow mapping)."""
    return (
        f"  - name: {name}\n    address: {name}@example.com\n    connector: {connector}\n"
        f"    poll_interval_seconds: {poll}\n    active: {str(active).lower()}\n"
    )


@dataclass
class ServiceDesk:
    """A config folder and its runtime, with helpers to look at what the service did."""

    root: Path
    runtime: Runtime

    @property
    def config_path(self) -> Path:
        """The config file."""
        return self.root / "mailgate.yaml"

    def ledger(self, account: str | None = None) -> list[LedgerEntry]:
        """Ledger entries in the order they were written."""
        with transaction(self.runtime.engine) as session:
            statement = select(LedgerEntry).order_by(col(LedgerEntry.id))
            if account is not None:
                statement = statement.where(LedgerEntry.account == account)
            return list(session.exec(statement))

    def call_count(self) -> int:
        """How many calls exist."""
        with transaction(self.runtime.engine) as session:
            return int(session.exec(select(func.count()).select_from(Call)).one())

    def status(self, account: str) -> AccountStatus | None:
        """The service's stored status of an account."""
        return account_statuses(self.runtime.engine).get(account)


def build_service_desk(root: Path, accounts: str, database: str = "sqlite:///mailgate.sqlite") -> ServiceDesk:
    """Write a config with the given ``accounts:`` entries, load the people, open the runtime."""
    (root / "mailgate.yaml").write_text(
        f"database: {database}\nproduct_name: Test Desk\naccounts:\n{accounts}"
    )
    (root / "fixtures.yaml").write_text(FIXTURES)
    runtime = Runtime(load_config(root / "mailgate.yaml"))
    load_fixtures(runtime.engine, root / "fixtures.yaml")
    return ServiceDesk(root, runtime)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (letting the service run) until it holds; fail after WAIT_LIMIT seconds."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_LIMIT:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a test's coroutine on a fresh event loop in the main thread (as ``mailgate run`` does)."""
    return asyncio.run(coro)
