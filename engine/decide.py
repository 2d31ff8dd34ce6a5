"""Gathering the facts about one message: its subject, its sender, its target item and the account."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlmodel import Session, select

from engine.config import AccountConfig, Config
from engine.mail import IncomingMessage
from engine.rules.facts import FactValue
from engine.storage.models import Call, OutboxMessage, Person, Request, Task
from engine.storage.queries import find_item, find_person, group_ids_of
from engine.subject import Intent, ParsedSubject

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
    """The facts for the rules plus the rows they were read from."""

    facts: dict[str, FactValue]
    sender: Person | None
    target: Call | Request | Task | None
    target_entity: str | None


def is_reply_to_us(session: Session, message: IncomingMessage) -> bool:
    """Whether the mail's In-Reply-To or References name a message we sent."""
    ids = [*message.in_reply_to, *message.references]
    if not ids:
        return False
    stmt = select(OutboxMessage.id).where(OutboxMessage.message_id.in_(ids)).limit(1)  # type: ignore[attr-defined]
    return session.exec(stmt).first() is not None


def gather_facts(
    session: Session, config: Config, account: AccountConfig, message: IncomingMessage, subject: ParsedSubject
) -> Situation:
    """Read everything the rules may ask about this message."""
    sender = find_person(session, message.from_address)
    entity = _TARGET_ENTITY.get(subject.intent)
    target = find_item(session, entity, subject.number) if entity and subject.number is not None else None
    facts: dict[str, FactValue] = {
        "intent": subject.intent.value,
        "number": subject.number,
        "bracketed": subject.bracketed,
        "sender.known": sender is not None,
        "sender.is_user": bool(sender and sender.is_user),
        "sender.is_analyst": bool(sender and sender.is_analyst),
        "sender.take_over": bool(sender and sender.take_over),
        "sender.is_target_user": bool(
            sender and target is not None and getattr(target, "user_id", None) == sender.id
        ),
        "sender.owns_target": bool(
            sender and target is not None and getattr(target, "assigned_analyst_id", None) == sender.id
        ),
        "sender.is_approver": False,
        "target.exists": target is not None,
        "target.kind": None,
        "target.status": target.status if target is not None else None,
        "target.closed": isinstance(target, Call) and target.status == "closed",
        "target.is_approval": isinstance(target, Task) and target.kind in ("approval", "user_approval"),
        "target.decided": isinstance(target, Task) and target.status in _DECIDED,
        "message.is_reply_to_us": is_reply_to_us(session, message),
        "message.auto_submitted": message.auto_submitted,
        "message.is_bounce": message.is_bounce,
        "message.bounce_code": message.bounce_code,
        "message.has_attachments": bool(message.attachments),
        "settings.email_at_update_via_email_in": config.email_at_update_via_email_in,
    }
    if target is not None:
        facts["target.kind"] = target.kind if isinstance(target, Task) else entity
    if isinstance(target, Task) and sender is not None:
        facts["sender.is_approver"] = target.approver_person_id == sender.id or (
            target.approver_group_id is not None and target.approver_group_id in group_ids_of(session, sender)
        )
    for flag in fields(account.flags):
        facts[f"flags.{flag.name}"] = bool(getattr(account.flags, flag.name))
    return Situation(facts, sender, target, entity if target is not None else None)
