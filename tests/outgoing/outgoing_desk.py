"""The desk the outgoing-mail tests work with: a config that sends through a test SMTP server.

:class:`OutDesk` wraps a ``Runtime``: ``deliver`` runs a real message through the pipeline of the
account ``helpdesk`` (helpdesk@desk.example), ``drain(now)`` drains the outbox once with the clock
at ``now``, and ``rows()`` / ``ledger()`` read the tables back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from smtp_test_server import SmtpServer
from sqlmodel import Session, col, select

from engine.outgoing.delivery import DrainReport, drain_outbox
from engine.pipeline import ProcessResult, process_message
from engine.runtime import Runtime
from engine.storage.models import LedgerEntry, OutboxMessage

DESK_ADDRESS = "helpdesk@desk.example"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

STAFF = """\
groups:
  - name: Service Desk
people:
  - {email: ada@example.com, name: Ada User, user: true}
  - {email: grace@example.com, name: Grace Analyst, user: false, analyst: true, groups: [Service Desk]}
calls:
  - {number: 12, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     assigned_group: Service Desk, summary: Printer jams}
  - {number: 15, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     assigned_group: Service Desk, summary: "VPN <drops> hourly"}
"""


@dataclass
class OutDesk:
    """One installation that sends its mail through a test SMTP server."""

    runtime: Runtime
    folder: Path

    def deliver(
        self,
        subject: str,
        sender: str = "ada@example.com",
        body: str = "Hello,\n\nplease help.\n",
        headers: Mapping[str, str] | None = None,
        in_reply_to: str | None = None,
    ) -> ProcessResult:
        """Build a real message from ``sender`` and run it through the helpdesk account."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = DESK_ADDRESS
        msg["Subject"] = subject
        msg["Date"] = format_datetime(T0)
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
            msg["References"] = f"<{in_reply_to}>"
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(body)
        return self.deliver_raw(msg.as_bytes())

    def deliver_raw(self, raw: bytes) -> ProcessResult:
        """Run raw bytes through the helpdesk account's pipeline."""
        account = self.runtime.config.account("helpdesk")
        return process_message(self.runtime, account, raw, origin="outgoing-test")

    def drain(self, now: datetime = T0) -> DrainReport:
        """Drain the outbox once with the clock at ``now``."""
        return asyncio.run(drain_outbox(self.runtime, now=now))

    def rows(self) -> list[OutboxMessage]:
        """Every outbox row, oldest first."""
        with Session(self.runtime.engine) as session:
            return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))

    def row(self, message_id: int) -> OutboxMessage:
        """One outbox row by id."""
        with Session(self.runtime.engine) as session:
            found = session.get(OutboxMessage, message_id)
            assert found is not None
            return found

    def ledger(self) -> list[LedgerEntry]:
        """Every ledger entry, oldest first."""
        with Session(self.runtime.engine) as session:
            return list(session.exec(select(LedgerEntry).order_by(col(LedgerEntry.id))))


def plain_server(server: SmtpServer, **extra: Any) -> dict[str, Any]:
    """The outgoing-server settings for a plain (no TLS, no login) test server."""
    return {"host": server.host, "port": server.port, "security": "plain", "timeout": 10, **extra}


MakeDesk = Callable[..., OutDesk]
"""The ``make_desk`` fixture's type."""

StartServer = Callable[..., SmtpServer]
"""The ``smtp`` fixture's type."""
