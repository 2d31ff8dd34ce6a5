"""A small service desk for behaviour tests: a real config, real fixtures, real mail through the pipeline.

``make_desk(...)`` writes ``mailgate.yaml`` (and the fixture YAML) into ``tmp_path``, loads the
fixtures with ``load_fixtures``, builds a ``Runtime`` and returns a :class:`Desk`. ``desk.deliver``
builds an RFC 5322 message with ``email.message.EmailMessage`` and runs ``process_message`` on it;
the read helpers return the JSON views the CLI prints (plus the outbox headers, which no view shows).

Every desk starts with the people in ``STAFF``; a test adds its own calls, requests and tasks (and
more people if it needs them) as fixture YAML. Tests run on SQLite; a test that also takes the
``db_url`` fixture and passes ``database=db_url`` runs on PostgreSQL as well.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlmodel import Session, col, select

from engine.config.model import load_config
from engine.pipeline import ProcessResult, process_message
from engine.runtime import Runtime
from engine.storage.fixtures import load_fixtures
from engine.storage.models import OutboxMessage, Person
from engine.storage.views import call_view, ledger_view, outbox_view, request_view, task_view

DESK_ADDRESS = "helpdesk@desk.example"

STAFF = """\
groups:
  - name: Service Desk
  - name: Network
  - name: Finance Approvers
people:
  - {email: ada@example.com, name: Ada User, user: true}
  - {email: bob@example.com, name: Bob User, user: true}
  - {email: grace@example.com, name: Grace Analyst, user: false, analyst: true, groups: [Service Desk]}
  - {email: alan@example.com, name: Alan Analyst, user: false, analyst: true, groups: [Service Desk]}
  - {email: linus@example.com, name: Linus, user: false, analyst: true, take_over: true, groups: [Network]}
  - {email: fran@example.com, name: Fran Approver, user: false, analyst: true, groups: [Finance Approvers]}
  - {email: hedy@example.com, name: Hedy Approver, user: false, analyst: true, groups: [Finance Approvers]}
"""

Attachment = tuple[str, str, bytes]


class Desk:
    """One installation under test: its runtime, its accounts, and helpers to mail it and read it back."""

    def __init__(self, runtime: Runtime, folder: Path) -> None:
        self.runtime = runtime
        self.folder = folder
        self.account = runtime.config.accounts[0]

    # --- sending -----------------------------------------------------------------------------------

    def deliver(
        self,
        subject: str,
        sender: str = "ada@example.com",
        body: str = "Hello,\n\nplease help.\n",
        attachments: Sequence[Attachment] = (),
        headers: Mapping[str, str] | None = None,
        html: str | None = None,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
        account: str | None = None,
    ) -> ProcessResult:
        """Build a real RFC 5322 message and run it through an account's pipeline (the first by default)."""
        target = self.runtime.config.account(account) if account else self.account
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = target.address or DESK_ADDRESS
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
        msg["Message-ID"] = f"<{message_id or uuid.uuid4().hex + '@mail.example'}>"
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
        chain = [*references, *([in_reply_to] if in_reply_to else [])]
        if chain:
            msg["References"] = " ".join(f"<{ref}>" for ref in dict.fromkeys(chain))
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        for filename, content_type, data in attachments:
            maintype, subtype = content_type.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return self.deliver_raw(msg.as_bytes(), account=account)

    def deliver_raw(self, raw: bytes, account: str | None = None) -> ProcessResult:
        """Run raw message bytes through the pipeline of an account (the first by default)."""
        target = self.runtime.config.account(account) if account else self.account
        return process_message(self.runtime, target, raw, origin="behaviour-test")

    # --- reading -----------------------------------------------------------------------------------

    def session(self) -> Session:
        """A fresh read session (use as a context manager)."""
        return Session(self.runtime.engine)

    def call(self, number: int) -> dict[str, Any]:
        """The call's JSON view; fails the test if there is no such call."""
        with self.session() as session:
            view = call_view(session, number)
        assert view is not None, f"no call {number}"
        return view

    def has_call(self, number: int) -> bool:
        """Whether a call with this number exists."""
        with self.session() as session:
            return call_view(session, number) is not None

    def request(self, number: int) -> dict[str, Any]:
        """The request's JSON view (with its tasks); fails the test if there is none."""
        with self.session() as session:
            view = request_view(session, number)
        assert view is not None, f"no request {number}"
        return view

    def task(self, number: int) -> dict[str, Any]:
        """The task's JSON view; fails the test if there is none."""
        with self.session() as session:
            view = task_view(session, number)
        assert view is not None, f"no task {number}"
        return view

    def outbox(self) -> list[dict[str, Any]]:
        """Every queued outgoing message, oldest first."""
        with self.session() as session:
            return outbox_view(session)

    def outbox_to(self, address: str) -> list[dict[str, Any]]:
        """The queued messages addressed to one recipient."""
        return [m for m in self.outbox() if m["to"] == address]

    def headers_of(self, message_id: str) -> dict[str, str]:
        """The extra headers an outgoing message will carry (Auto-Submitted, ...)."""
        with self.session() as session:
            row = session.exec(select(OutboxMessage).where(OutboxMessage.message_id == message_id)).one()
            return dict(json.loads(row.headers_json))

    def ledger(self) -> list[dict[str, Any]]:
        """The processed-message ledger of every account."""
        with self.session() as session:
            return ledger_view(session)

    def people(self, email: str) -> list[Person]:
        """Everyone on record with this address (case-insensitive), oldest first."""
        with self.session() as session:
            rows = session.exec(select(Person).order_by(col(Person.id))).all()
            return [p for p in rows if p.email.lower() == email.lower()]

    @staticmethod
    def texts(view: Mapping[str, Any], kind: str | None = None) -> list[str]:
        """The texts of an item view's history entries (of one kind, if given)."""
        return [h["text"] for h in view["history"] if kind is None or h["kind"] == kind]

    def add_person(self, email: str, name: str, *, user: bool = True, analyst: bool = False) -> None:
        """Add a person row directly (the fixture format cannot hold two people with one address)."""
        with Session(self.runtime.engine) as session:
            session.add(Person(email=email, name=name, is_user=user, is_analyst=analyst))
            session.commit()


def _account(
    name: str,
    *,
    address: str,
    flags: Mapping[str, bool] | None,
    call_template: Mapping[str, str] | None,
    default_logging_analyst: str | None,
    reopen_assign_to: str | None,
    rule_pack: str,
    authentication: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    account: dict[str, Any] = {"name": name, "address": address, "connector": "memory"}
    account["rule_pack"] = rule_pack
    if flags:
        account["flags"] = dict(flags)
    if call_template:
        account["call_template"] = dict(call_template)
    if default_logging_analyst:
        account["default_logging_analyst"] = default_logging_analyst
    if reopen_assign_to:
        account["reopen_assign_to"] = reopen_assign_to
    if authentication is not None:
        account["authentication"] = dict(authentication)
    return account


MakeDesk = Callable[..., Desk]


@pytest.fixture
def make_desk(tmp_path: Path) -> Iterator[MakeDesk]:
    """A factory of desks: ``make_desk(items_yaml, flags=..., ...)``; every desk is closed afterwards."""
    made: list[Runtime] = []

    def build(
        items: str = "",
        *,
        flags: Mapping[str, bool] | None = None,
        call_template: Mapping[str, str] | None = None,
        default_logging_analyst: str | None = None,
        reopen_assign_to: str | None = None,
        email_at_update: bool | None = None,
        product_name: str | None = None,
        rule_pack: str = "default",
        other_accounts: Sequence[Mapping[str, Any]] = (),
        database: str | None = None,
        files: Mapping[str, str] | None = None,
        authentication: Mapping[str, Any] | None = None,
        keep_originals_days: int | None = None,
    ) -> Desk:
        folder = tmp_path / f"desk{len(made)}"
        folder.mkdir()
        for relative, text in (files or {}).items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        accounts = [
            _account(
                "helpdesk",
                address=DESK_ADDRESS,
                flags=flags,
                call_template=call_template,
                default_logging_analyst=default_logging_analyst,
                reopen_assign_to=reopen_assign_to,
                rule_pack=rule_pack,
                authentication=authentication,
            )
        ]
        for extra in other_accounts:
            accounts.append(
                _account(
                    extra["name"],
                    address=extra.get("address", f"{extra['name']}@desk.example"),
                    flags=extra.get("flags"),
                    call_template=extra.get("call_template"),
                    default_logging_analyst=extra.get("default_logging_analyst"),
                    reopen_assign_to=extra.get("reopen_assign_to"),
                    rule_pack=extra.get("rule_pack", "default"),
                )
            )
        config: dict[str, Any] = {
            "database": database or f"sqlite:///{folder / 'mailgate.sqlite'}",
            "mail_domain": "desk.example",
            "accounts": accounts,
        }
        if product_name is not None:
            config["product_name"] = product_name
        if email_at_update is not None:
            config["messaging"] = {"email_at_update_via_email_in": email_at_update}
        if keep_originals_days is not None:
            config["processing"] = {"keep_originals_days": keep_originals_days}
        with (folder / "mailgate.yaml").open("w", encoding="utf-8") as handle:
            YAML().dump(config, handle)
        runtime = Runtime(load_config(folder / "mailgate.yaml"))
        made.append(runtime)
        for index, text in enumerate((STAFF, textwrap.dedent(items))):
            if text.strip():
                path = folder / f"fixtures-{index}.yaml"
                path.write_text(text, encoding="utf-8")
                load_fixtures(runtime.engine, path)
        return Desk(runtime, folder)

    yield build
    for runtime in made:
        runtime.close()
