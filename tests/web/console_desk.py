"""An installation with mail in every state, for the console's tests (HTTP and browser).

Its local pack (``rules/local.yaml``) removes ``log_new_call``, so a new mail is quarantined until
the pack is fixed on disk (``fix_pack``); ``rules/strict.yaml`` refuses every call update (what
try-it compares against). Admins: ``root`` (admin) and ``vic`` (viewer), password ``PASSWORD``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from sqlmodel import select

from engine.config.model import load_config
from engine.pipeline import ProcessResult, process_message
from engine.runtime import Runtime
from engine.storage.console import save_admin
from engine.storage.db import transaction
from engine.storage.fixtures import load_fixtures
from engine.storage.models import OutboxMessage
from engine.web.passwords import hash_password

PASSWORD = "correct horse battery"
CONFIG = """\
database: {database}
product_name: Test Desk
accounts:
  - name: helpdesk
    address: helpdesk@example.com
    rule_pack: local
"""
BROKEN_PACK = """\
extends: default
remove:
  - log_new_call   # a mistake: new mail has no rule
"""
FIXED_PACK = "extends: default\n"
STRICT_PACK = """\
extends: default
rules:
  - name: no_updates_by_mail
    when: {intent: update_call}
    outcome: refused
"""
FIXTURES = """\
people:
  - {email: ada@example.com, name: Ada, user: true}
  - {email: grace@example.com, name: Grace, user: false, analyst: true}
calls:
  - {number: 100, status: open, summary: Printer, user: ada@example.com, assigned_analyst: grace@example.com}
"""
SCRIPT_SUBJECT = "<script>document.title='pwned'</script> Printer <b>on fire</b>"
SCRIPT_HTML = (
    "<html><body><p>Hi</p><script>window.pwned = true; document.title = 'pwned';</script></body></html>"
)


def make_mail(
    subject: str, message_id: str, sender: str = "ada@example.com", html: str | None = None
) -> bytes:
    """A simple mail (with an HTML alternative if ``html``)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content("It is broken.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


@dataclass
class ConsoleDesk:
    """The installation, its runtime, and what was processed into it."""

    root: Path
    runtime: Runtime
    results: dict[str, ProcessResult] = field(default_factory=dict)

    def process(self, name: str, raw: bytes) -> ProcessResult:
        """Process one mail into the helpdesk account and remember its result by ``name``."""
        result = process_message(self.runtime, self.runtime.config.account("helpdesk"), raw, name)
        self.results[name] = result
        return result

    def fix_pack(self) -> None:
        """Repair the local pack on disk (new mail logs a call again)."""
        (self.root / "rules" / "local.yaml").write_text(FIXED_PACK)

    def fail_outgoing(self) -> int:
        """Mark the newest outgoing message failed, as a refusing server would; its id."""
        with transaction(self.runtime.engine) as session:
            row = session.exec(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()  # type: ignore[union-attr]
            assert row is not None and row.id is not None
            row.status, row.last_error, row.attempts = "failed", "550 mailbox unavailable", 1
            session.add(row)
            return row.id


def build_console_desk(root: Path, database: str = "sqlite:///mailgate.sqlite") -> ConsoleDesk:
    """Write the installation, load people, add the admins and process the mails the tests use."""
    (root / "rules").mkdir()
    (root / "rules" / "local.yaml").write_text(BROKEN_PACK)
    (root / "rules" / "strict.yaml").write_text(STRICT_PACK)
    (root / "mailgate.yaml").write_text(CONFIG.format(database=database))
    (root / "fixtures.yaml").write_text(FIXTURES)
    runtime = Runtime(load_config(root / "mailgate.yaml"))
    load_fixtures(runtime.engine, root / "fixtures.yaml")
    save_admin(runtime.engine, "root", hash_password(PASSWORD), "admin")
    save_admin(runtime.engine, "vic", hash_password(PASSWORD), "viewer")
    desk = ConsoleDesk(root, runtime)
    desk.process("update", make_mail("RE: [CALL#100] toner everywhere", "<update-1@example.com>"))
    desk.process("new", make_mail("Scanner jammed", "<new-1@example.com>"))  # quarantined: no rule
    desk.process("other", make_mail("Coffee machine", "<new-2@example.com>"))  # quarantined too
    desk.process("script", make_mail(SCRIPT_SUBJECT, "<html-1@example.com>", html=SCRIPT_HTML))
    return desk
