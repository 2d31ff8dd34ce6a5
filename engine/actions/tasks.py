"""Actions on approval tasks: approve or reject, and let the request's workflow go on."""

from __future__ import annotations

from dataclasses import dataclass

from engine.actions.base import Action, ActionContext
from engine.actions.items import ActionError, add_history
from engine.storage.models import Request, Task


def _task(ctx: ActionContext) -> Task:
    if not isinstance(ctx.item, Task):
        raise ActionError(f"this action works on tasks, not on a {ctx.entity}")
    return ctx.item


def _request_history(ctx: ActionContext, request: Request, kind: str, text: str) -> None:
    """A history entry on the task's request (written by the workflow, so with no author)."""
    ctx.store.add_history("request", request, kind, text, now=ctx.now, message_key=ctx.message.key)


def _set_task_status(ctx: ActionContext, task: Task, status: str) -> None:
    ctx.store.touch(task, ctx.now, status=status)


@dataclass(frozen=True)
class ApproveTask(Action):
    """Approve the task; when its stage is complete, open the request's next tasks by sequence."""

    name = "approve_task"

    def run(self, ctx: ActionContext) -> None:
        """Mark approved and advance the workflow."""
        task = _task(ctx)
        ctx.store.set_columns(task, status="approved")
        add_history(ctx, "approved", f"Approved by email from {ctx.message.from_address}")
        if task.request_id is None:
            return
        request = ctx.store.get(Request, task.request_id)
        siblings = ctx.store.other_tasks_of_request(task)
        stage_open = any(t.status == "open" and t.sequence <= task.sequence for t in siblings)
        if request is not None:
            _request_history(
                ctx, request, "approved", f"Task {task.number} approved by {ctx.message.from_address}"
            )
        if stage_open:
            return
        pending = [t for t in siblings if t.status == "pending"]
        if not pending:
            return
        next_sequence = min(t.sequence for t in pending)
        for sibling in pending:
            if sibling.sequence == next_sequence:
                _set_task_status(ctx, sibling, "open")
                if request is not None:
                    _request_history(ctx, request, "task_opened", f"Task {sibling.number} opened")


@dataclass(frozen=True)
class RejectTask(Action):
    """Reject the task; cancel the request's pending and open tasks and mark the request rejected."""

    name = "reject_task"

    def run(self, ctx: ActionContext) -> None:
        """Mark rejected and stop the workflow."""
        task = _task(ctx)
        ctx.store.set_columns(task, status="rejected")
        add_history(ctx, "rejected", f"Rejected by email from {ctx.message.from_address}")
        if task.request_id is None:
            return
        for sibling in ctx.store.other_tasks_of_request(task):
            if sibling.status in ("open", "pending"):
                _set_task_status(ctx, sibling, "cancelled")
        request = ctx.store.get(Request, task.request_id)
        if request is not None:
            ctx.store.set_columns(request, status="rejected")
            _request_history(
                ctx, request, "rejected", f"Task {task.number} rejected by {ctx.message.from_address}"
            )
