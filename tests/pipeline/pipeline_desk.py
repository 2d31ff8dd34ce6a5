"""A small installation on a real SQLite file, for the pipeline safety tests."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from engine.config.model import load_config
from engine.pipeline import ProcessResult, process_message
from engine.runtime import Runtime
from engine.storage.db import transaction
from engine.storage.fixtures import load_fixtures
from engine.storage.views import call_view, ledger_view, outbox_view, quarantine_view

CONFIG = """\
database: {database}
product_name: Test Desk
processing: {{time_limit_seconds: {limit}}}
accounts:
  - name: helpdesk
    address: helpdesk@example.com
    rule_pack: {pack}
  - name: second
    address: second@example.com
    rule_pack: {pack}
"""

FIXTURES = """\
people:
  - {email: ada@example.com, name: Ada, user: true}
  - {email: grace@example.com, name: Grace, user: false, analyst: true}
calls:
  - {number: 100, status: open, user: ada@example.com, assigned_analyst: grace@example.com}
"""


def make_mail(
    subject: str = "Printer broken",
    sender: str = "ada@example.com",
    body: str = "It is broken.",
    message_id: str | None = "<m1@example.com>",
) -> bytes:
    """A simple, valid RFC 5322 message."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@example.com"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes()


@dataclass
class Desk:
    """A config folder, its runtime, and helpers to feed and inspect it."""

    root: Path
    runtime: Runtime

    def process(self, raw: bytes, account: str = "helpdesk") -> ProcessResult:
        """Run one message through the pipeline."""
        return process_message(self.runtime, self.runtime.config.account(account), raw, "test")

    def reload(self) -> None:
        """Re-read config and packs (as a restarted service would)."""
        self.runtime.close()
        self.runtime = Runtime(load_config(self.root / "mailgate.yaml"))

    def call(self, number: int) -> dict[str, object] | None:
        """The call's JSON view."""
        with transaction(self.runtime.engine) as session:
            return call_view(session, number)

    def outbox(self) -> list[dict[str, object]]:
        """Every queued outgoing message."""
        with transaction(self.runtime.engine) as session:
            return outbox_view(session)

    def ledger(self) -> list[dict[str, object]]:
        """Every ledger entry."""
        with transaction(self.runtime.engine) as session:
            return ledger_view(session)

    def quarantine(self) -> list[dict[str, object]]:
        """Every quarantine entry."""
        with transaction(self.runtime.engine) as session:
            return quarantine_view(session)


def build_desk(
    root: Path,
    pack: str = "default",
    limit: float = 30,
    pack_text: str | None = None,
    database: str = "sqlite:///mailgate.sqlite",
) -> Desk:
    """Write config (and optionally a local pack), load fixtures, open the runtime (SQLite unless told)."""
    if pack_text is not None:
        (root / "rules").mkdir(exist_ok=True)
        (root / "rules" / f"{pack}.yaml").write_text(pack_text)
    (root / "mailgate.yaml").write_text(CONFIG.format(pack=pack, limit=limit, database=database))
    (root / "fixtures.yaml").write_text(FIXTURES)
    runtime = Runtime(load_config(root / "mailgate.yaml"))
    load_fixtures(runtime.engine, root / "fixtures.yaml")
    return Desk(root, runtime)
