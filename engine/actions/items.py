"""Actions on calls and their kin: log, update history, attach, mark, close, reopen."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col

from engine.actions.base import Action, ActionContext, Item
from engine.errors import MailgateError
from engine.mail.message import reply_portion
from engine.storage.blobs import insert_with_large_value
from engine.storage.db import next_number
from engine.storage.direct import run_statement
from engine.storage.models import AttachedObject, Call, HistoryEntry, Person
from engine.storage.queries import find_group, group_id, person_id
from engine.storage.rows import build_row, insert_persistent


class ActionError(MailgateError):
    """An action could not do its work (the message is rolled back and quarantined)."""


def _item(ctx: ActionContext) -> Item:
    if ctx.item is None:
        raise ActionError("no item to act on: the rule runs an item action where the subject names none")
    return ctx.item


# Rows are written with plain, prebuilt statements rather than through the ORM's unit of work (its
# flush costs several times the INSERT itself). History and attachments are never read back in the
# same message; a new person or call is then attached to the session as if it had been loaded, and a
# changed column is mirrored into the item's object without marking it dirty, so the objects the
# actions see stay true and nothing is written twice.
_INSERT_HISTORY = insert(HistoryEntry)
_SET_COLUMNS: dict[tuple[type[SQLModel], tuple[str, ...]], Any] = {}


def set_columns(session: Session, item: Item, **values: Any) -> None:
    """UPDATE the item's columns to ``values`` (those that differ) and mirror them into its object.

    The object is not marked dirty, so no flush writes it again; a change made to another column
    through the object is still flushed as usual.
    """
    changed = {name: value for name, value in values.items() if getattr(item, name) != value}
    if not changed:
        return
    table = type(item)
    key = (table, tuple(sorted(changed)))
    statement = _SET_COLUMNS.get(key)
    if statement is None:
        statement = (
            update(table)
            .where(col(table.id) == bindparam("item_id"))
            .values({name: bindparam(f"new_{name}") for name in key[1]})
        )
        _SET_COLUMNS[key] = statement
    params = {f"new_{name}": value for name, value in changed.items()}
    run_statement(session, statement, {"item_id": item.id, **params})
    for name, value in changed.items():
        set_committed_value(item, name, value)


def _entity(ctx: ActionContext) -> str:
    return ctx.entity or "call"


def add_history(ctx: ActionContext, kind: str, text: str, security_profile: str = "Unspecified") -> None:
    """Append a history entry to the item in hand."""
    item = _item(ctx)
    assert item.id is not None
    author = ctx.sender.id if ctx.sender else None
    run_statement(
        ctx.session,
        _INSERT_HISTORY,
        {
            "entity": _entity(ctx),
            "entity_id": item.id,
            "kind": kind,
            "text": text,
            "security_profile": security_profile,
            "author_id": author,
            "created_at": ctx.now,
            "sender_authentication": ctx.authentication.method,
            "message_id": ctx.message.key,  # the mail's ledger key: its kept original (storage/originals.py)
        },
    )
    _touch(ctx, item)


def _touch(ctx: ActionContext, item: Item, **values: Any) -> None:
    """Set the item's ``updated_at`` to now (and other columns), written at once."""
    if ctx.session.is_modified(item):  # pending changes through the object: let the flush write them all
        item.updated_at = ctx.now
        for name, value in values.items():
            setattr(item, name, value)
        ctx.session.add(item)
        return
    set_columns(ctx.session, item, updated_at=ctx.now, **values)


def _ensure_sender(ctx: ActionContext) -> Person | None:
    """The sender's person, created as a User if unknown; None for an ambiguous sender (no one to record)."""
    if ctx.sender is None and ctx.message.sender_ambiguity is None:
        person = build_row(
            Person, email=ctx.message.from_address, name=ctx.message.from_name, is_user=True, is_analyst=False
        )
        ctx.sender = insert_persistent(ctx.session, person)
    return ctx.sender


@dataclass(frozen=True)
class LogCall(Action):
    """Log a new call from the account's call template; the body becomes its description."""

    name = "log_call"

    def run(self, ctx: ActionContext) -> None:
        """Create the call, the sender if unknown, and its first history entry."""
        sender = _ensure_sender(ctx)
        template = ctx.account.call_template
        logging_analyst: int | None = None
        if ctx.account.flags.use_linked_analyst and sender is not None and sender.is_analyst:
            logging_analyst = sender.id
        if logging_analyst is None:
            logging_analyst = person_id(ctx.session, ctx.account.default_logging_analyst)
        if logging_analyst is None and sender is not None:
            logging_analyst = sender.id
        call = build_row(
            Call,
            number=next_number(ctx.session, "call"),
            status="open",
            summary=ctx.message.subject.strip()[:250] or "(no subject)",
            description=ctx.message.body,
            user_id=sender.id if sender is not None else None,
            assigned_analyst_id=person_id(ctx.session, template.assigned_analyst),
            assigned_group_id=group_id(ctx.session, template.assigned_group),
            logging_analyst_id=logging_analyst,
            partition=template.partition,
            screen_set=template.screen_set,
            ipk_status=template.ipk_status,
            ipk_stream=template.ipk_stream,
            account=ctx.account.name,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        insert_persistent(ctx.session, call)
        ctx.item, ctx.entity, ctx.number = call, "call", call.number
        by = sender.email if sender is not None else f"{ctx.message.from_address} (ambiguous sender, no user)"
        add_history(ctx, "logged", f"Logged from email by {by}: {call.summary}")


@dataclass(frozen=True)
class AppendHistory(Action):
    """Add the mail's text to the item's history (only the reply portion when truncation applies)."""

    name = "append_history"
    kind: Literal["email_update", "note"] = "email_update"

    def run(self, ctx: ActionContext) -> None:
        """Write the history entry."""
        body = ctx.message.body
        if ctx.account.flags.truncate_incoming_emails and ctx.facts.get("message.is_reply_to_us"):
            body = reply_portion(body)
        header = f"Email from {ctx.message.from_address}: {ctx.message.subject}".strip()
        add_history(ctx, self.kind, f"{header}\n\n{body}".rstrip())


@dataclass(frozen=True)
class AttachFiles(Action):
    """Attach the mail's attachments to the item, each with a history entry under the same profile."""

    name = "attach_files"
    security_profile: str = "Unspecified"

    def run(self, ctx: ActionContext) -> None:
        """Store every attachment."""
        item = _item(ctx)
        assert item.id is not None
        for attachment in ctx.message.attachments:
            insert_with_large_value(  # a big one is written in pieces (engine/storage/blobs.py)
                ctx.session,
                AttachedObject,
                {
                    "entity": _entity(ctx),
                    "entity_id": item.id,
                    "filename": attachment.filename,
                    "content_type": attachment.content_type,
                    "size": attachment.size,
                    "sha256": hashlib.sha256(attachment.data).hexdigest(),
                    "data": attachment.data,
                    "security_profile": self.security_profile,
                    "created_at": ctx.now,
                },
                "data",
            )
            text = f"Attached {attachment.filename} ({attachment.size} bytes) from email"
            add_history(ctx, "attachment", text, self.security_profile)


@dataclass(frozen=True)
class MarkUpdatedByEmail(Action):
    """Set the item's "updated by email" mark."""

    name = "mark_updated_by_email"

    def run(self, ctx: ActionContext) -> None:
        """Set the mark."""
        _touch(ctx, _item(ctx), updated_by_email=True)


def _call(ctx: ActionContext) -> Call:
    item = _item(ctx)
    if not isinstance(item, Call):
        raise ActionError(f"this action works on calls, not on a {ctx.entity}")
    return item


@dataclass(frozen=True)
class CloseCall(Action):
    """Close the call."""

    name = "close_call"

    def run(self, ctx: ActionContext) -> None:
        """Set the call closed and record who closed it."""
        call = _call(ctx)
        call.status, call.closed_at = "closed", ctx.now
        call.last_analyst_id = call.assigned_analyst_id or call.last_analyst_id
        add_history(ctx, "closed", f"Closed by email from {ctx.message.from_address}")


@dataclass(frozen=True)
class ReopenCall(Action):
    """Reopen a closed call, assigned as the account's ``reopen_assign_to`` says."""

    name = "reopen_call"

    def run(self, ctx: ActionContext) -> None:
        """Set the call open again and assign it."""
        call = _call(ctx)
        call.status, call.closed_at = "open", None
        if ctx.account.reopen_assign_to == "template_group":
            group = find_group(ctx.session, ctx.account.call_template.assigned_group)
            call.assigned_group_id = group.id if group else call.assigned_group_id
            call.assigned_analyst_id = None
            where = f"group {group.name}" if group else "its group"
        else:
            call.assigned_analyst_id = call.last_analyst_id or call.assigned_analyst_id
            where = "its last analyst"
        add_history(
            ctx, "reopened", f"Reopened by email from {ctx.message.from_address}; assigned to {where}"
        )


__all__ = ["ActionError", "add_history", "set_columns"]
