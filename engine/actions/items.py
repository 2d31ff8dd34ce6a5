"""Actions on calls and their kin: log, update history, attach, mark, close, reopen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.actions.base import Action, ActionContext, Item
from engine.errors import MailgateError
from engine.mail.message import reply_portion
from engine.outgoing.outbox import bodies_of_our_messages
from engine.storage.models import Call, Person


class ActionError(MailgateError):
    """An action could not do its work (the message is rolled back and quarantined)."""


def _item(ctx: ActionContext) -> Item:
    if ctx.item is None:
        raise ActionError("no item to act on: the rule runs an item action where the subject names none")
    return ctx.item


def _entity(ctx: ActionContext) -> str:
    return ctx.entity or "call"


def add_history(ctx: ActionContext, kind: str, text: str, security_profile: str = "Unspecified") -> None:
    """Append a history entry to the item in hand, by the sender, linked to the mail (and touch the item)."""
    ctx.store.add_history(
        _entity(ctx),
        _item(ctx),
        kind,
        text,
        now=ctx.now,
        message_key=ctx.message.key,
        author_id=ctx.sender.id if ctx.sender else None,
        sender_authentication=ctx.authentication.method,
        security_profile=security_profile,
    )


def _touch(ctx: ActionContext, item: Item, **values: Any) -> None:
    """Set the item's ``updated_at`` to now (and other columns), written at once."""
    ctx.store.touch(item, ctx.now, **values)


def _ensure_sender(ctx: ActionContext) -> Person | None:
    """The sender's person, created as a User if unknown; None for an ambiguous sender (no one to record)."""
    if ctx.sender is None and ctx.message.sender_ambiguity is None:
        ctx.sender = ctx.store.add_user(ctx.message.from_address, ctx.message.from_name)
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
            logging_analyst = ctx.store.person_id(ctx.account.default_logging_analyst)
        if logging_analyst is None and sender is not None:
            logging_analyst = sender.id
        call = ctx.store.add_call(
            status="open",
            summary=ctx.message.subject.strip()[:250] or "(no subject)",
            description=ctx.message.body,
            user_id=sender.id if sender is not None else None,
            assigned_analyst_id=ctx.store.person_id(template.assigned_analyst),
            assigned_group_id=ctx.store.group_id(template.assigned_group),
            logging_analyst_id=logging_analyst,
            partition=template.partition,
            screen_set=template.screen_set,
            ipk_status=template.ipk_status,
            ipk_stream=template.ipk_stream,
            account=ctx.account.name,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
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
            answered = [*ctx.message.in_reply_to, *ctx.message.references]
            body = reply_portion(body, lambda: bodies_of_our_messages(ctx.session, answered))
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
        for attachment in ctx.message.attachments:
            ctx.store.attach_file(
                _entity(ctx),
                item,
                filename=attachment.filename,
                content_type=attachment.content_type,
                data=attachment.data,
                security_profile=self.security_profile,
                now=ctx.now,
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
        last_analyst = call.assigned_analyst_id or call.last_analyst_id
        _touch(ctx, call, status="closed", closed_at=ctx.now, last_analyst_id=last_analyst)
        add_history(ctx, "closed", f"Closed by email from {ctx.message.from_address}")


@dataclass(frozen=True)
class ReopenCall(Action):
    """Reopen a closed call, assigned as the account's ``reopen_assign_to`` says."""

    name = "reopen_call"

    def run(self, ctx: ActionContext) -> None:
        """Set the call open again and assign it."""
        call = _call(ctx)
        if ctx.account.reopen_assign_to == "template_group":
            group = ctx.store.find_group(ctx.account.call_template.assigned_group)
            assigned = {
                "assigned_group_id": group.id if group else call.assigned_group_id,
                "assigned_analyst_id": None,
            }
            where = f"group {group.name}" if group else "its group"
        else:
            assigned = {"assigned_analyst_id": call.last_analyst_id or call.assigned_analyst_id}
            where = "its last analyst"
        _touch(ctx, call, status="open", closed_at=None, **assigned)
        add_history(
            ctx, "reopened", f"Reopened by email from {ctx.message.from_address}; assigned to {where}"
        )


__all__ = ["ActionError", "add_history"]
