"""Gathering the facts about one message: its subject, its sender, its target item and the account.

Facts are read with narrow column queries (no ORM objects): deciding is on the path of every
message, and most decisions need only a handful of values. The rows themselves are loaded only
when a rule's actions need them (``load_rows``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from engine.config.model import AccountConfig, Config, Flags
from engine.identity.reply_tokens import (
    ItemRef,
    TokenProof,
    authenticated_by_token,
    check_tokens,
    read_token,
    threading_ids,
)
from engine.mail.authentication import NOT_CHECKED, SenderAuthentication, repeated_field_verdict
from engine.mail.message import IncomingMessage
from engine.outgoing.outbox import known_ours
from engine.rules.facts import FactValue
from engine.rules.subject import Intent, ParsedSubject
from engine.storage.direct import pipelined_batch, run_statement, run_statement_on
from engine.storage.models import Call, GroupMember, OutboxMessage, Person, Request, Task
from engine.storage.queries import UNKNOWN, known_sender
from engine.storage.rows import load_persistent
from engine.storage.token_keys import token_secrets

_TARGET_ENTITY: dict[Intent, str] = {
    Intent.UPDATE_CALL: "call",
    Intent.CLOSE_CALL: "call",
    Intent.UPDATE_REQUEST: "request",
    Intent.UPDATE_TASK: "task",
    Intent.APPROVE_TASK: "task",
    Intent.REJECT_TASK: "task",
}
_UPDATE_INTENT = {"call": Intent.UPDATE_CALL, "request": Intent.UPDATE_REQUEST, "task": Intent.UPDATE_TASK}
_DECIDED = ("approved", "rejected", "closed", "cancelled")


def named_entity(subject: ParsedSubject) -> str | None:
    """The kind of item (call, request, task) the subject's intent acts on, or None."""
    return _TARGET_ENTITY.get(subject.intent)


@dataclass(frozen=True)
class Situation:
    """The facts for the rules, plus the ids of the rows they were read from.

    ``subject`` is the subject as decided: the parsed one, or, when it names no item and a valid
    reply token does, an update of the token's item. ``tokens`` is what the mail's reply tokens
    prove; ``authentication`` the verdict on the sender, a valid reply token for the item the mail
    acts on included; ``notes`` say in words what changed the facts (an ambiguous sender, a token).
    """

    facts: dict[str, FactValue]
    sender_id: int | None
    target_id: int | None
    target_entity: str | None
    # the verdict on the sender the facts hold; a source that needs the session (a reply token
    # signed with a secret in the database) may upgrade the one authenticate_sender gave here
    authentication: SenderAuthentication = NOT_CHECKED
    subject: ParsedSubject | None = None
    tokens: TokenProof = field(default_factory=TokenProof)
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
    lowered = address.lower()
    known = known_sender(lowered)  # read ahead for a PostgreSQL batch
    if known is not UNKNOWN:
        return known
    return run_statement(session, _SENDER_BY_ADDRESS, {"address": lowered}).first()


_TARGET_ROW_BY_NUMBER: dict[str, Any] = {
    name: select(*table.__table__.columns).where(col(table.number) == bindparam("number"))  # type: ignore[union-attr]
    for name, table in (("call", Call), ("request", Request), ("task", Task))
}
_TARGET_ROWS_BY_NUMBERS: dict[str, Any] = {
    name: select(*table.__table__.columns).where(col(table.number).in_(bindparam("numbers", expanding=True)))  # type: ignore[union-attr]
    for name, table in (("call", Call), ("request", Request), ("task", Task))
}
_BY_NUMBER = {"call": "call number", "request": "request number", "task": "task number"}  # keys in batch.rows


def look_up_targets(subjects: Iterable[ParsedSubject | None]) -> None:
    """In a batch in pipeline mode (PostgreSQL), read the items these subjects name at once.

    One SELECT per kind of item for the batch, where each reply would wait for its own. A row is
    used as read only while the batch has not written it (``_target_row``); an item not found is
    asked for again (an earlier message of the batch may log it). Elsewhere this does nothing.
    """
    batch = pipelined_batch()
    if batch is None or batch.pipeline is None:
        return
    wanted: dict[str, set[int]] = {}
    for subject in subjects:
        entity = _TARGET_ENTITY.get(subject.intent) if subject is not None else None
        if entity is not None and subject is not None and subject.number is not None:
            wanted.setdefault(entity, set()).add(subject.number)
    for entity, numbers in wanted.items():
        found = run_statement_on(
            batch.connection, _TARGET_ROWS_BY_NUMBERS[entity], {"numbers": sorted(numbers)}
        )
        for row in found.rows:
            batch.rows[(entity, row.id)] = batch.rows[(_BY_NUMBER[entity], row.number)] = row


def _target_row(session: Session, entity: str, number: int) -> Any:
    batch = pipelined_batch()
    if batch is None:
        return run_statement(session, _TARGET_BY_NUMBER[entity], {"number": number}).first()
    ahead: Any = batch.rows.get((_BY_NUMBER[entity], number))
    if ahead is not None and batch.rows.get((entity, ahead.id)) is ahead:  # read ahead, not written since
        return ahead
    # the whole row, so that load_rows makes it without a round trip of its own
    row = run_statement(session, _TARGET_ROW_BY_NUMBER[entity], {"number": number}).first()
    if row is not None:
        batch.rows[(entity, row.id)] = batch.rows[(_BY_NUMBER[entity], number)] = row
    return row


def is_reply_to_us(session: Session, message: IncomingMessage) -> bool:
    """Whether the mail's In-Reply-To or References name a message we sent."""
    ids = [*message.in_reply_to, *message.references]
    if not ids:
        return False
    known = known_ours(ids)  # read ahead for a PostgreSQL batch
    if known is not None:
        return known
    return run_statement(session, _OUR_MESSAGE, {"ids": ids}).first() is not None


def _in_group(session: Session, person_id: int, group_id: int) -> bool:
    found = run_statement(session, _MEMBERSHIP, {"person": person_id, "group": group_id}).first()
    return found is not None


def reply_token_proof(session: Session, message: IncomingMessage) -> TokenProof:
    """What the reply tokens quoted in the mail prove about its sender (nothing if it is ambiguous)."""
    quoted = threading_ids(message.in_reply_to, message.references)
    if not any(read_token(message_id) for message_id in quoted):
        return TokenProof()  # no token of ours: the secrets are not even read
    sender = None if message.sender_ambiguity else message.from_address
    return check_tokens(message.in_reply_to, message.references, sender, token_secrets(session).verifying)


def _threaded(subject: ParsedSubject, tokens: TokenProof) -> ParsedSubject:
    """The subject, or an update of the reply token's item when the subject names no item."""
    item = tokens.thread_item
    if subject.intent is not Intent.UNRECOGNISED or item is None:
        return subject
    return replace(subject, intent=_UPDATE_INTENT[item.entity], number=item.number, bracketed=False)


def _token_fact(tokens: TokenProof, target: ItemRef | None) -> str:
    if not tokens.found:
        return "none"
    if tokens.proves(target):
        return "valid"
    return "other_item" if tokens.proven else "refused"


def _token_notes(tokens: TokenProof, parsed: ParsedSubject, subject: ParsedSubject, sender: str) -> list[str]:
    notes = []
    if subject is not parsed and tokens.thread_item is not None:
        notes.append(f"the subject names no item; a reply token threads the mail to {tokens.thread_item}")
    if tokens.proven:
        named = ", ".join(str(item) if item else "no item" for item in tokens.proven)
        notes.append(f"reply token(s) signed for {sender} about {named}")
    if tokens.refused:
        why = "not signed for this sender, altered, or signed with an expired secret"
        notes.append(f"{tokens.refused} reply token(s) refused: {why}")
    return notes


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
    authenticated, whatever the evidence says; nor does a mail with a repeated Subject (or other
    field allowed once), which no signature vouches for.
    """
    notes: list[str] = []
    ambiguous = message.sender_ambiguity is not None
    repeated = repeated_field_verdict(message)
    if ambiguous:
        notes.append(f"the sender is ambiguous and treated as unknown: {message.sender_ambiguity}")
        authentication = SenderAuthentication(
            False, "none", f"the sender is ambiguous: {message.sender_ambiguity}"
        )
    elif repeated is not None:
        notes.append(f"the sender is not authenticated: {repeated.evidence}")
        authentication = repeated
    sender = None if ambiguous else _sender_row(session, message.from_address)
    sender_id = sender.id if sender is not None else None
    tokens = reply_token_proof(session, message)
    parsed, subject = subject, _threaded(subject, tokens)
    notes += _token_notes(tokens, parsed, subject, message.from_address)
    entity = _TARGET_ENTITY.get(subject.intent)
    item = ItemRef(entity, subject.number) if entity is not None and subject.number is not None else None
    if repeated is None:
        authentication = authenticated_by_token(authentication, tokens, item, message.from_address)
    target: Any = None
    if item is not None:
        target = _target_row(session, item.entity, item.number)
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
        "message.is_reply_to_us": bool(tokens.proven) or is_reply_to_us(session, message),
        "message.reply_token": _token_fact(tokens, item),
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
    facts.update(_flag_facts(account.flags))
    return Situation(
        facts,
        sender_id,
        target.id if target is not None else None,
        entity if target else None,
        authentication,
        subject=subject,
        tokens=tokens,
        notes=tuple(notes),
    )


@functools.lru_cache(maxsize=256)
def _flag_facts(flags: Flags) -> tuple[tuple[str, bool], ...]:
    """An account's flags as facts (``flags.NAME``), in the order they are declared; made once."""
    return tuple((f"flags.{flag.name}", bool(getattr(flags, flag.name))) for flag in fields(flags))


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
