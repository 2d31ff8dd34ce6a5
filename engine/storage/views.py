"""The JSON the CLI prints for calls, requests, tasks, the outbox, the ledger and the quarantine.

Contract: every function returns plain JSON-serialisable data (str, int, bool, None, lists and
dicts; timestamps as ISO 8601 strings in UTC). People appear as their email, groups as their name,
items as their number; lists are in a stable order (history and attachments oldest first, outbox,
ledger and quarantine by id). Keys are only ever added, never renamed or removed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from engine.storage.ledger import ledger_accounts
from engine.storage.models import (
    AttachedObject,
    Call,
    Group,
    HistoryEntry,
    LedgerEntry,
    OutboxMessage,
    Person,
    QuarantineEntry,
    Request,
    Task,
)
from engine.storage.originals import Original, key_conditions

JsonDict = dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    """A timestamp as ISO 8601 in UTC (stored timestamps without a zone are UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC).isoformat()
    return moment.astimezone(UTC).isoformat()


def _email(session: Session, person_id: int | None) -> str | None:
    if person_id is None:
        return None
    person = session.get(Person, person_id)
    return person.email if person is not None else None


def _group_name(session: Session, group_id: int | None) -> str | None:
    if group_id is None:
        return None
    group = session.get(Group, group_id)
    return group.name if group is not None else None


def _history(session: Session, entity: str, entity_id: int | None) -> list[JsonDict]:
    entries = session.exec(
        select(HistoryEntry)
        .where(HistoryEntry.entity == entity, HistoryEntry.entity_id == entity_id)
        .order_by(col(HistoryEntry.id))
    ).all()
    return [
        {
            "kind": entry.kind,
            "text": entry.text,
            "security_profile": entry.security_profile,
            # whether the mail that wrote the entry came from the sender its From names (None: not a mail)
            "sender_authenticated": (
                None if entry.sender_authentication is None else entry.sender_authentication != "none"
            ),
            "sender_authentication": entry.sender_authentication,
            "message_id": entry.message_id,  # the mail that wrote it: `mailgate message show` finds it
            "created_at": iso(entry.created_at),
        }
        for entry in entries
    ]


def _attachments(session: Session, entity: str, entity_id: int | None) -> list[JsonDict]:
    # Select the columns, not the rows, so that the file contents are never loaded.
    rows = session.execute(
        sa_select(
            col(AttachedObject.filename),
            col(AttachedObject.size),
            col(AttachedObject.security_profile),
            col(AttachedObject.content_type),
            col(AttachedObject.created_at),
        )
        .where(col(AttachedObject.entity) == entity, col(AttachedObject.entity_id) == entity_id)
        .order_by(col(AttachedObject.id))
    ).all()
    return [
        {
            "filename": filename,
            "size": size,
            "security_profile": profile,
            "content_type": content_type,
            "created_at": iso(created_at),
        }
        for filename, size, profile, content_type, created_at in rows
    ]


def _common(session: Session, entity: str, row: Call | Request | Task) -> JsonDict:
    return {
        "number": row.number,
        "status": row.status,
        "assigned_analyst": _email(session, row.assigned_analyst_id),
        "summary": row.summary,
        "description": row.description,
        "updated_by_email": row.updated_by_email,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "history": _history(session, entity, row.id),
        "attachments": _attachments(session, entity, row.id),
    }


def call_view(session: Session, number: int) -> JsonDict | None:
    """A call as JSON, or None if there is no call with that number."""
    call = session.exec(select(Call).where(Call.number == number)).first()
    if call is None:
        return None
    return {
        **_common(session, "call", call),
        "user": _email(session, call.user_id),
        "logging_analyst": _email(session, call.logging_analyst_id),
        "last_analyst": _email(session, call.last_analyst_id),
        "assigned_group": _group_name(session, call.assigned_group_id),
        "partition": call.partition,
        "screen_set": call.screen_set,
        "ipk_status": call.ipk_status,
        "ipk_stream": call.ipk_stream,
    }


def request_view(session: Session, number: int) -> JsonDict | None:
    """A request with its tasks as JSON, or None if there is no request with that number."""
    request = session.exec(select(Request).where(Request.number == number)).first()
    if request is None:
        return None
    tasks = session.exec(
        select(Task).where(Task.request_id == request.id).order_by(col(Task.sequence), col(Task.number))
    ).all()
    return {
        **_common(session, "request", request),
        "user": _email(session, request.user_id),
        "logging_analyst": None,
        "assigned_group": None,
        "tasks": [
            {"number": task.number, "kind": task.kind, "status": task.status, "sequence": task.sequence}
            for task in tasks
        ],
    }


def task_view(session: Session, number: int) -> JsonDict | None:
    """A task as JSON (with its request's number), or None if there is no task with that number."""
    task = session.exec(select(Task).where(Task.number == number)).first()
    if task is None:
        return None
    request = session.get(Request, task.request_id) if task.request_id is not None else None
    return {
        **_common(session, "task", task),
        "user": _email(session, request.user_id) if request is not None else None,
        "logging_analyst": None,
        "assigned_group": None,
        "kind": task.kind,
        "request": request.number if request is not None else None,
        "sequence": task.sequence,
        "approver": _email(session, task.approver_person_id),
        "approver_group": _group_name(session, task.approver_group_id),
    }


def outbox_view(session: Session) -> list[JsonDict]:
    """Every message in the outbox, oldest first."""
    messages = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
    return [
        {
            "id": message.id,
            "type": message.type,
            "to": message.to_address,
            "subject": message.subject,
            "body": message.body,
            "message_id": message.message_id,
            "in_reply_to": message.in_reply_to,
            "references": message.references,
            "headers": _detail(message.headers_json),
            "status": message.status,
            "entity": message.entity,
            "number": message.number,
            "account": message.account,
            "created_at": iso(message.created_at),
            "attempts": message.attempts,
            "next_attempt_at": iso(message.next_attempt_at),
            "sent_at": iso(message.sent_at),
            "sent_via": message.sent_via,
            "server_reply": message.server_reply,
            "last_error": message.last_error,
        }
        for message in messages
    ]


def _detail(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def ledger_view(session: Session, account: str | None = None) -> list[JsonDict]:
    """Processed-message ledger entries (of one account, or all), oldest first."""
    statement = select(LedgerEntry).order_by(col(LedgerEntry.id))
    if account is not None:
        statement = statement.where(LedgerEntry.account == account)
    return [
        {
            "id": entry.id,
            "account": entry.account,
            "message_key": entry.message_key,
            "message_id": entry.message_id,
            "outcome": entry.outcome,
            "rule": entry.rule,
            "entity": entry.entity,
            "number": entry.number,
            "detail": _detail(entry.detail),
            "processed_at": iso(entry.processed_at),
        }
        for entry in session.exec(statement).all()
    ]


def quarantine_view(session: Session) -> list[JsonDict]:
    """Quarantined messages (without their raw bytes, only the size), oldest first."""
    rows = session.exec(
        select(QuarantineEntry, func.length(QuarantineEntry.raw))
        .options(defer(cast(Any, QuarantineEntry.raw)))
        .order_by(col(QuarantineEntry.id))
    ).all()
    return [
        {
            "id": entry.id,
            "account": entry.account,
            "message_key": entry.message_key,
            "origin": entry.origin,
            "reason": entry.reason,
            "status": entry.status,
            "received_at": iso(entry.received_at),
            "size": int(size or 0),
        }
        for entry, size in rows
    ]


def message_view(session: Session, key_or_message_id: str, originals: list[Original]) -> list[JsonDict]:
    """What ``mailgate message show`` prints for each mail with this Message-ID or ledger key."""
    # account by account: the ledger's keys are indexed only behind their account
    entries = session.exec(
        select(LedgerEntry)
        .where(col(LedgerEntry.account).in_(ledger_accounts(session)))
        .where(key_conditions(col(LedgerEntry.message_key), key_or_message_id))
        .order_by(col(LedgerEntry.id))
    ).all()
    kept = {(o.account, o.message_key): o for o in originals}
    views: list[JsonDict] = []
    for entry in entries:
        original = kept.get((entry.account, entry.message_key))
        history = session.exec(
            select(HistoryEntry.entity, HistoryEntry.entity_id, HistoryEntry.kind).where(
                HistoryEntry.message_id == entry.message_key
            )
        ).all()
        views.append(
            {
                "account": entry.account,
                "message_key": entry.message_key,
                "message_id": entry.message_id,
                "outcome": entry.outcome,
                "rule": entry.rule,
                "entity": entry.entity,
                "number": entry.number,
                "processed_at": entry.processed_at,
                "history_entries": [
                    {"entity": e, "number": _number(session, e, i), "kind": k} for e, i, k in history
                ],
                "original": (
                    {"received_at": original.received_at, "size": len(original.raw)}
                    if original is not None
                    else None
                ),
            }
        )
    return views


def _number(session: Session, entity: str, row_id: int) -> int | None:
    row: Call | Request | Task | None = None
    if entity == "call":
        row = session.get(Call, row_id)
    elif entity == "request":
        row = session.get(Request, row_id)
    elif entity == "task":
        row = session.get(Task, row_id)
    return row.number if row is not None else None
