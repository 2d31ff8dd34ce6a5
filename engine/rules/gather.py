"""Gathering the facts about one message: its subject, its sender, its target item and the account.

Facts are read with narrow column queries (no ORM objects): deciding is on the path of every
message, and most decisions need only a handful of values. The rows themselves are loaded only
when a rule's actions need them (``load_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from engine.config.model import AccountConfig, Config
from engine.mail.authentication import NOT_CHECKED, SenderAuthentication
from engine.mail.message import IncomingMessage
from engine.rules.facts import FactValue
from engine.rules.subject import Intent, ParsedSubject
from engine.storage.direct import run_statement
from engine.storage.models import Call, GroupMember, OutboxMessage, Person, Request, Task
from engine.storage.rows import load_persistent

_TARGET_ENTITY: dict[Intent, str] = {
    Intent.UPDATE_CALL: "call",
    Intent.CLOSE_CALL: "call",
    Intent.UPDATE_REQUEST: "request",
    Intent.UPDATE_TASK: "task",
    Intent.APPROVE_TASK: "task",
    Intent.REJECT_TASK: "task",
}
_DECIDED = ("approved", "rejected", "closed", "cancelled")


@dataclass(frozen=True)
class Situation:
    """The facts for the rules, plus the ids of the rows they were read from.

    ``notes`` say in words what changed the facts (an ambiguous sender).
    """

    facts: dict[str, FactValue]
    sender_id: int | None
    target_id: int | None
    target_entity: str | None
    # the verdict on the sender the facts hold; a source that needs the session (a reply token
    # signed with a secret in the database) may upgrade the one authenticate_sender gave here
    authentication: SenderAuthentication = NOT_CHECKED
    notes: tuple[str, ...] = ()


# Statements are built once; each message only binds its values (building one costs more than running it).
_SENDER_BY_ADDRESS = (
    select(col(Person.id), col(Person.is_user), col(Person.is_analyst), col(Person.take_over))
    .where(func.lower(Person.email) == bindparam("address"))
    .order_by(col(Person.id))
    .limit(1)
)
_TARGET_BY_NUMBER: dict[str, Any] = {
    "call": select(col(Call.id), col(Call.status), col(Call.user_id), col(Call.assigned_analyst_id)).where(
        col(Call.number) == bindparam("number")
    ),
    "request": select(
        col(Request.id), col(Request.status), col(Request.user_id), col(Request.assigned_analyst_id)
    ).where(col(Request.number) == bindparam("number")),
    "task": select(
        col(Task.id),
        col(Task.status),
        col(Task.kind),
        col(Task.assigned_analyst_id),
        col(Task.approver_person_id),
        col(Task.approver_group_id),
    ).where(col(Task.number) == bindparam("number")),
}
_MEMBERSHIP = select(col(GroupMember.person_id)).where(
    col(GroupMember.person_id) == bindparam("person"), col(GroupMember.group_id) == bindparam("group")
)
_OUR_MESSAGE = (
    select(col(OutboxMessage.id))
    .where(col(OutboxMessage.message_id).in_(bindparam("ids", expanding=True)))
    .limit(1)
)


def _sender_row(session: Session, address: str) -> Any:
    return run_statement(session, _SENDER_BY_ADDRESS, {"address": address.lower()}).first()


def _target_row(session: Session, entity: str, number: int) -> Any:
    return run_statement(session, _TARGET_BY_NUMBER[entity], {"number": number}).first()


def is_reply_to_us(session: Session, message: IncomingMessage) -> bool:
    """Whether the mail's In-Reply-To or References name a message we sent."""
    ids = [*message.in_reply_to, *message.references]
    if not ids:
        return False
    return run_statement(session, _OUR_MESSAGE, {"ids": ids}).first() is not None


def _in_group(session: Session, person_id: int, group_id: int) -> bool:
    found = run_statement(session, _MEMBERSHIP, {"person": person_id, "group": group_id}).first()
    return found is not None


def gather_facts(
    session: Session,
    config: Config,
    account: AccountConfig,
    message: IncomingMessage,
    subject: ParsedSubject,
    authentication: SenderAuthentication = NOT_CHECKED,
) -> Situation:
    """Read everything the rules may ask about this message (``authentication``: authenticate_sender's).

    An ambiguous sender (``message.sender_ambiguity``) is looked up as nobody and never counts as
    authenticated, whatever the evidence says.
    """
    notes: list[str] = []
    ambiguous = message.sender_ambiguity is not None
    if ambiguous:
        notes.append(f"the sender is ambiguous and treated as unknown: {message.sender_ambiguity}")
        authentication = SenderAuthentication(
            False, "none", f"the sender is ambiguous: {message.sender_ambiguity}"
        )
    sender = None if ambiguous else _sender_row(session, message.from_address)
    sender_id = sender.id if sender is not None else None
    entity = _TARGET_ENTITY.get(subject.intent)
    target: Any = None
    if entity is not None and subject.number is not None:
        target = _target_row(session, entity, subject.number)
    is_task = entity == "task" and target is not None
    kind = target.kind if is_task else (entity if target is not None else None)
    facts: dict[str, FactValue] = {
        "intent": subject.intent.value,
        "number": subject.number,
        "bracketed": subject.bracketed,
        "sender.known": sender is not None,
        "sender.ambiguous": ambiguous,
        "sender.is_user": bool(sender is not None and sender.is_user),
        "sender.is_analyst": bool(sender is not None and sender.is_analyst),
        "sender.take_over": bool(sender is not None and sender.take_over),
        "sender.is_target_user": bool(
            sender_id is not None and target is not None and not is_task and target.user_id == sender_id
        ),
        "sender.owns_target": bool(
            sender_id is not None and target is not None and target.assigned_analyst_id == sender_id
        ),
        "sender.is_approver": False,
        "sender.authenticated": authentication.authenticated,
        "sender.authentication": authentication.method,
        "target.exists": target is not None,
        "target.kind": kind,
        "target.status": target.status if target is not None else None,
        "target.closed": entity == "call" and target is not None and target.status == "closed",
        "target.is_approval": is_task and kind in ("approval", "user_approval"),
        "target.decided": is_task and target.status in _DECIDED,
        "message.is_reply_to_us": is_reply_to_us(session, message),
        "message.auto_submitted": message.auto_submitted,
        "message.is_bounce": message.is_bounce,
        "message.bounce_code": message.bounce_code,
        "message.has_attachments": bool(message.attachments),
        "settings.email_at_update_via_email_in": config.email_at_update_via_email_in,
    }
    if is_task and sender_id is not None and target is not None:
        facts["sender.is_approver"] = target.approver_person_id == sender_id or (
            target.approver_group_id is not None and _in_group(session, sender_id, target.approver_group_id)
        )
    for flag in fields(account.flags):
        facts[f"flags.{flag.name}"] = bool(getattr(account.flags, flag.name))
    target_id = target.id if target is not None else None
    return Situation(facts, sender_id, target_id, entity if target else None, authentication, tuple(notes))


def load_rows(session: Session, situation: Situation) -> tuple[Person | None, Call | Request | Task | None]:
    """The sender's and the target's rows, for the actions that change them."""
    sender = (
        load_persistent(session, Person, situation.sender_id) if situation.sender_id is not None else None
    )
    target: Call | Request | Task | None = None
    if situation.target_id is not None:
        if situation.target_entity == "call":
            target = load_persistent(session, Call, situation.target_id)
        elif situation.target_entity == "request":
            target = load_persistent(session, Request, situation.target_id)
        else:
            target = load_persistent(session, Task, situation.target_id)
    return sender, target
