"""The actions a rule pack may name in ``- do: NAME``: the built-in table, and the lookup by name.

Every built-in action is listed in ``BUILTIN_ACTIONS`` as ``name -> "module:Class"`` (imported when
a pack names it); pyproject.toml declares the same names under the ``mailgate.actions`` entry-point
group, where installed packages add theirs (``name = "package.module:ActionClass"``). The lookup is
``engine.config.plugins.Registry``: an unknown name gets a did-you-mean, a broken plugin is reported
at the step that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.actions.base import Action
from engine.config.params import Mistake, build_from_params
from engine.config.plugins import PluginError, Registry

BUILTIN_ACTIONS: Mapping[str, str] = {
    "log_call": "engine.actions.items:LogCall",
    "append_history": "engine.actions.items:AppendHistory",
    "attach_files": "engine.actions.items:AttachFiles",
    "mark_updated_by_email": "engine.actions.items:MarkUpdatedByEmail",
    "close_call": "engine.actions.items:CloseCall",
    "reopen_call": "engine.actions.items:ReopenCall",
    "reply": "engine.actions.messages:Reply",
    "notify_assignee": "engine.actions.messages:NotifyAssignee",
    "send_summary": "engine.actions.messages:SendSummary",
    "approve_task": "engine.actions.tasks:ApproveTask",
    "reject_task": "engine.actions.tasks:RejectTask",
    "give_reason": "engine.actions.reasons:GiveReason",
}


class UnknownAction(PluginError):
    """No action is registered under that name, or it could not be loaded."""


ACTIONS: Registry[Action] = Registry(
    "mailgate.actions", BUILTIN_ACTIONS, Action, noun="action", error=UnknownAction, list_known=False
)


def action_names() -> list[str]:
    """Every action name: built-in, registered in this process, and from installed packages."""
    return ACTIONS.names()


def action_class(name: str) -> type[Action]:
    """The action class registered as ``name`` (UnknownAction if there is none or it is broken)."""
    return ACTIONS.load(name)


def register_action(cls: type[Action]) -> type[Action]:
    """Class decorator: make an action available under ``cls.name`` in this process (tests, embedding)."""
    return ACTIONS.register(cls)


def build_action(cls: type[Action], params: Mapping[str, Any]) -> tuple[Action | None, list[Mistake]]:
    """Construct an action from YAML parameters; returns it or a list of (param, message) mistakes."""
    return build_from_params(cls, params, f"action {cls.name!r}")
