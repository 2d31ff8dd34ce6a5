"""Actions that write to the outbox: replies to the sender, notifications, and summaries.

Loop and abuse safety: an automatic answer (a reply or a summary) is never sent to a machine
(auto-submitted mail, mailing lists, bounces, the null sender), never to one of our own addresses,
and at most ``outgoing.replies_per_sender_per_hour`` times an hour to one address. A mail that is
not answered is still processed; its ledger entry's detail lists why it was not answered
(``not_answered``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import or_
from sqlmodel import col, select

from engine.actions.base import Action, ActionContext
from engine.mail.sender import mailbox_key
from engine.outgoing.outbox import REPLY_WINDOW, entity_tag, queue_message, recent_replies_to
from engine.rules.gather import named_entity
from engine.rules.templates import SAMPLE_VARIABLES
from engine.storage.models import Call, Forward, Person, Request, Task
from engine.storage.queries import group_ids_of, group_members

if TYPE_CHECKING:
    from engine.rules.pack import RulePack


def template_variables(ctx: ActionContext, **extra: Any) -> dict[str, Any]:
    """The variables every message template may use."""
    item = ctx.item
    variables: dict[str, Any] = {
        "product_name": ctx.config.product_name,
        "account": ctx.account.name,
        "entity": ctx.entity,
        "number": ctx.number,
        "status": getattr(item, "status", None),
        "summary": getattr(item, "summary", ""),
        "sender_name": ctx.message.from_name or ctx.message.from_address,
        "sender_email": ctx.message.from_address,
        "incoming_subject": ctx.message.subject,
        "items": [],
        "item_kind": "",
        "authentication": ctx.authentication.evidence,
        "authentication_method": ctx.authentication.method,
    }
    variables.update(extra)
    return variables


def _tag(ctx: ActionContext, entity: str | None, number: int | None) -> str | None:
    if entity is None or number is None:
        return None
    slot = {"call": "call_tag", "request": "request_tag", "task": "task_tag"}[entity]
    return entity_tag(ctx.pack.keywords[slot][0], number)


def with_tag(subject: str, tag: str | None) -> str:
    """The subject with the item's tag in front, unless it is already in it."""
    if tag is None or tag.lower() in subject.lower():
        return subject
    return f"{tag} {subject}"


def _check_template(pack: RulePack, name: str) -> list[str]:
    template = pack.templates.get(name)
    if template is None:
        from engine.errors import did_you_mean

        return [f"no template {name!r} in the pack{did_you_mean(name, pack.templates)}"]
    from engine.rules.templates import TemplateError

    try:
        template.render(SAMPLE_VARIABLES)
    except TemplateError as exc:
        return [str(exc)]
    return []


def refusal_to_answer(ctx: ActionContext, to: str) -> str | None:
    """Why no automatic answer to this mail may go to ``to``, or None when one may."""
    message = ctx.message
    sender = message.from_address.strip().lower()
    if not sender or sender == "<>":
        return "the mail has no sender (null sender)"
    if message.is_bounce:
        return "the mail is a bounce"
    if message.auto_submitted:
        return f"the mail was sent by a machine: {message.auto_submitted_reason}"
    if message.sender_ambiguity:
        return f"the sender is ambiguous: {message.sender_ambiguity}"
    own = ctx.config.own_addresses()
    for address in dict.fromkeys((sender, to.strip().lower())):
        if address in own:
            return f"{address} is one of our own addresses"
    limit = ctx.config.outgoing.replies_per_sender_per_hour
    sent = recent_replies_to(ctx.session, to, ctx.now - REPLY_WINDOW)
    if sent >= limit:
        mailbox = mailbox_key(to)
        return f"rate limit: {sent} automatic replies to {mailbox} in the last hour (at most {limit})"
    return None


def may_answer(ctx: ActionContext, to: str | None = None) -> bool:
    """Whether an automatic answer may go to ``to`` (the sender by default); the ledger says why not."""
    reason = refusal_to_answer(ctx, to if to is not None else ctx.message.from_address)
    if reason is not None:
        reasons = ctx.ledger_detail.setdefault("not_answered", [])
        if reason not in reasons:
            reasons.append(reason)
    return reason is None


@dataclass(frozen=True)
class Reply(Action):
    """Answer the sender with a template; threads to their mail and tags the item in the subject.

    ``about_item: false`` answers without revealing anything about the target item, for senders
    who must not learn whether it exists: the kind and number come from the subject as written
    (so the answer reads the same whether or not the item exists), the item's status and summary
    stay empty, and the reply's token names no item.
    """

    name = "reply"
    template: str
    about_item: bool = True

    def check(self, pack: RulePack) -> list[str]:
        """The template must exist and render."""
        return _check_template(pack, self.template)

    def run(self, ctx: ActionContext) -> None:
        """Queue the reply (unless the mail came from a machine, from us, or the sender had enough)."""
        if not may_answer(ctx):
            return
        if self.about_item:
            entity, number = ctx.entity, ctx.number
            variables = template_variables(ctx)
        else:
            entity, number = named_entity(ctx.subject), ctx.subject.number
            variables = template_variables(ctx, entity=entity, number=number, status=None, summary="")
        rendered = ctx.pack.templates[self.template].render_message(variables)
        ctx.replies.append(
            queue_message(
                ctx.session,
                ctx.config,
                type=self.template,
                to=ctx.message.from_address,
                subject=with_tag(rendered.subject, _tag(ctx, entity, number)),
                body=rendered.text,
                html=rendered.html,
                account=ctx.account.name,
                answering=ctx.message,
                auto_submitted="auto-replied",
                entity=ctx.entity if self.about_item else None,
                number=ctx.number if self.about_item else None,
            )
        )


@dataclass(frozen=True)
class NotifyAssignee(Action):
    """Tell the item's assigned analyst (or, if none, its group's members) that email updated it."""

    name = "notify_assignee"
    template: str = "notify_updated_via_email"

    def check(self, pack: RulePack) -> list[str]:
        """The template must exist and render."""
        return _check_template(pack, self.template)

    def run(self, ctx: ActionContext) -> None:
        """Queue one notification per recipient (never to the sender themself)."""
        item = ctx.item
        if item is None:
            return
        recipients: list[Person] = []
        analyst_id = getattr(item, "assigned_analyst_id", None)
        if analyst_id is not None:
            analyst = ctx.session.get(Person, analyst_id)
            recipients = [analyst] if analyst else []
        elif isinstance(item, Call) and item.assigned_group_id is not None:
            recipients = group_members(ctx.session, item.assigned_group_id)
        rendered = ctx.pack.templates[self.template].render_message(template_variables(ctx))
        for person in recipients:
            if person.email.lower() == ctx.message.from_address:
                continue
            ctx.notifications.append(
                queue_message(
                    ctx.session,
                    ctx.config,
                    type=self.template,
                    to=person.email,
                    subject=with_tag(rendered.subject, _tag(ctx, ctx.entity, ctx.number)),
                    body=rendered.text,
                    html=rendered.html,
                    account=ctx.account.name,
                    answering=None,
                    auto_submitted="auto-generated",
                    entity=ctx.entity,
                    number=ctx.number,
                )
            )


@dataclass(frozen=True)
class SendSummary(Action):
    """Mail the identified sender a list of the open items they work on."""

    name = "send_summary"
    items: Literal["calls", "requests", "tasks", "approvals"]
    template: str

    def check(self, pack: RulePack) -> list[str]:
        """The template must exist and render."""
        return _check_template(pack, self.template)

    def run(self, ctx: ActionContext) -> None:
        """Collect the items and queue the summary to the person on record (never to a Reply-To)."""
        person = ctx.sender
        if person is None or not may_answer(ctx, person.email):
            return
        rows = [
            {
                "number": row.number,
                "status": row.status,
                "summary": row.summary,
                "updated_at": row.updated_at.strftime("%Y-%m-%d %H:%M"),
            }
            for row in self._collect(ctx, person)
        ]
        variables = template_variables(ctx, items=rows, item_kind=self.items, entity=None, number=None)
        rendered = ctx.pack.templates[self.template].render_message(variables)
        ctx.replies.append(
            queue_message(
                ctx.session,
                ctx.config,
                type=self.template,
                to=person.email,
                subject=rendered.subject,
                body=rendered.text,
                html=rendered.html,
                account=ctx.account.name,
                answering=ctx.message,
                auto_submitted="auto-replied",
            )
        )

    def _collect(self, ctx: ActionContext, person: Person) -> list[Call] | list[Request] | list[Task]:
        session = ctx.session
        if self.items == "calls":
            forwarded = select(Forward.call_id).where(
                or_(col(Forward.forwarded_by_id) == person.id, col(Forward.forwarded_to_id) == person.id)
            )
            calls = select(Call).where(
                col(Call.status) == "open",
                or_(col(Call.assigned_analyst_id) == person.id, col(Call.id).in_(forwarded)),
            )
            return list(session.exec(calls.order_by(col(Call.number))))
        if self.items == "requests":
            requests = select(Request).where(
                col(Request.status) == "open", col(Request.assigned_analyst_id) == person.id
            )
            return list(session.exec(requests.order_by(col(Request.number))))
        if self.items == "tasks":
            tasks = select(Task).where(
                col(Task.status) == "open",
                col(Task.kind) == "task",
                col(Task.assigned_analyst_id) == person.id,
            )
            return list(session.exec(tasks.order_by(col(Task.number))))
        groups = group_ids_of(session, person)
        approvals = select(Task).where(
            col(Task.status) == "open",
            col(Task.kind).in_(("approval", "user_approval")),
            or_(col(Task.approver_person_id) == person.id, col(Task.approver_group_id).in_(groups or {-1})),
        )
        return list(session.exec(approvals.order_by(col(Task.number))))
