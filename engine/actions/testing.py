"""A harness to test an action the way the pipeline runs it, shipped for integrators' tests too.

``ActionHarness`` makes a small desk in a folder: a config with one folder account, a real SQLite
database, the people and items of a fixture file (the ``mailgate db load`` format), and the rule
pack you give it, which names your action. ``deliver`` runs one mail through the real pipeline
(parse, decide, act, ledger: one transaction), and the accessors show what it wrote::

    from engine.actions.registry import register_action
    from engine.actions.testing import ActionHarness

    register_action(AddNote)  # or declare it under the mailgate.actions entry points

    def test_add_note_writes_its_text(tmp_path):
        with ActionHarness(tmp_path, pack=PACK, fixtures=PEOPLE) as desk:
            result = desk.deliver(mail(subject="Printer jammed"))
            assert result.outcome == "logged"
            assert "Out of hours" in desk.history("call", result.number)[-1].text

Nothing here is mocked, and this module does not import pytest. See docs/actions.md.
"""

from __future__ import annotations

import textwrap
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from types import TracebackType

from sqlmodel import Session, col, select

from engine.config.model import AccountConfig, load_config
from engine.pipeline import ProcessResult, process_message
from engine.runtime import Runtime
from engine.storage.fixtures import load_fixtures
from engine.storage.models import Call, HistoryEntry, OutboxMessage, Request, Task
from engine.storage.queries import find_item

ACCOUNT_ADDRESS = "helpdesk@example.com"


def mail(
    subject: str,
    body: str = "Hello,\n\nplease help.\n",
    *,
    sender: str = "ada@example.com",
    to: str = ACCOUNT_ADDRESS,
) -> bytes:
    """A plain text mail from ``sender`` to the harness's account, with a fresh Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(body)
    return message.as_bytes()


class ActionHarness:
    """A desk in ``folder`` whose one account (``helpdesk``) runs ``pack``: deliver mail, read what changed.

    Contract: ``pack`` is the text of a rule pack (usually ``extends: default`` plus the rules that
    name the action under test); ``fixtures`` is the text of a ``mailgate db load`` file (optional);
    ``flags`` are the account's flags as YAML text lines (e.g. ``"auto_reply: true"``). The action
    must be registered (``register_action`` or an entry point) before the harness is made, since
    the pack is loaded, and refused with ``ConfigError`` if wrong, when the harness starts.
    """

    def __init__(self, folder: Path, *, pack: str, fixtures: str = "", flags: str = "") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "inbox").mkdir(exist_ok=True)
        (folder / "pack.yaml").write_text(textwrap.dedent(pack), encoding="utf-8")
        flag_lines = textwrap.indent(textwrap.dedent(flags).strip(), " " * 6)
        (folder / "mailgate.yaml").write_text(
            f"database: sqlite:///{folder / 'desk.sqlite'}\n"
            "accounts:\n"
            "  - name: helpdesk\n"
            f"    address: {ACCOUNT_ADDRESS}\n"
            "    connector:\n"
            "      type: folder\n"
            "      path: inbox\n"
            "    rule_pack: pack.yaml\n" + (f"    flags:\n{flag_lines}\n" if flag_lines else ""),
            encoding="utf-8",
        )
        self.runtime = Runtime(load_config(folder / "mailgate.yaml"))
        if fixtures:
            fixture_file = folder / "fixtures.yaml"
            fixture_file.write_text(textwrap.dedent(fixtures), encoding="utf-8")
            load_fixtures(self.runtime.engine, fixture_file)

    @property
    def account(self) -> AccountConfig:
        """The harness's one account."""
        return self.runtime.config.accounts[0]

    def deliver(self, raw: bytes | str) -> ProcessResult:
        """Run one mail through the pipeline as the service would; returns what happened to it."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        return process_message(self.runtime, self.account, data, origin="harness")

    def item(self, entity: str, number: int) -> Call | Request | Task | None:
        """The call, request or task with this number, as the database holds it now."""
        with Session(self.runtime.engine) as session:
            return find_item(session, entity, number)

    def history(self, entity: str, number: int) -> list[HistoryEntry]:
        """The item's history entries, oldest first."""
        item = self.item(entity, number)
        if item is None:
            return []
        with Session(self.runtime.engine) as session:
            statement = (
                select(HistoryEntry)
                .where(col(HistoryEntry.entity) == entity, col(HistoryEntry.entity_id) == item.id)
                .order_by(col(HistoryEntry.id))
            )
            return list(session.exec(statement))

    def outbox(self) -> list[OutboxMessage]:
        """Every outgoing message queued so far, oldest first."""
        with Session(self.runtime.engine) as session:
            return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))

    def close(self) -> None:
        """Release the database."""
        self.runtime.close()

    def __enter__(self) -> ActionHarness:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
