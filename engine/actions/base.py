"""The action interface, the per-message context actions work in, and the registry of action names.

An action is a small frozen dataclass whose fields are exactly its YAML parameters. The rule-pack
loader builds it from ``- do: NAME`` plus the other keys of the step, checks the parameter types,
and calls ``check`` so that a mistake is refused at load. Third-party packages add actions through
the ``mailgate.actions`` entry-point group (``name = "package.module:ActionClass"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlmodel import Session

from engine.config.model import AccountConfig, Config
from engine.config.params import Mistake, build_from_params
from engine.mail.message import IncomingMessage
from engine.rules.facts import FactValue
from engine.rules.subject import ParsedSubject
from engine.storage.models import Call, OutboxMessage, Person, Request, Task, utcnow

if TYPE_CHECKING:
    from engine.rules.pack import RulePack

log = logging.getLogger(__name__)

Item = Call | Request | Task


@dataclass
class ActionContext:
    """Everything one message's actions may read, and what they report back.

    Built fresh for each message and thrown away afterwards; actions write only through
    ``session`` (inside the message's single transaction) and never commit.
    """

    session: Session
    config: Config
    account: AccountConfig
    pack: RulePack
    message: IncomingMessage
    subject: ParsedSubject
    facts: Mapping[str, FactValue]
    sender: Person | None
    target: Item | None
    target_entity: str | None
    now: datetime = field(default_factory=utcnow)
    item: Item | None = None
    entity: str | None = None
    number: int | None = None
    replies: list[OutboxMessage] = field(default_factory=list)
    notifications: list[OutboxMessage] = field(default_factory=list)
    ledger_detail: dict[str, Any] = field(default_factory=dict)  # extra keys for the ledger entry's detail

    def __post_init__(self) -> None:
        if self.target is not None:
            self.item, self.entity, self.number = self.target, self.target_entity, self.target.number

    def flag(self, name: str) -> bool:
        """An account flag's value."""
        return bool(getattr(self.account.flags, name))


class Action:
    """Base of every action.

    Contract: subclasses are ``@dataclass(frozen=True)``; each field is a YAML parameter with a
    plain type (str, int, bool, str | None, or a Literal of strings) and a default when optional.
    ``run`` performs the effect through ``ctx.session`` only; it must not commit, must not send
    mail itself (it queues into the outbox), and must leave the database consistent if it raises
    (the pipeline rolls the whole message back and quarantines it). ``check`` returns the
    mistakes that only the pack can reveal (e.g. a template that does not exist).
    """

    name: ClassVar[str] = ""

    def run(self, ctx: ActionContext) -> None:
        """Perform the action for one message."""
        raise NotImplementedError

    def check(self, pack: RulePack) -> list[str]:
        """Problems with this step that depend on the pack (none by default)."""
        return []


_REGISTRY: dict[str, type[Action]] = {}
_ENTRY_POINT_GROUP = "mailgate.actions"
_entry_points_loaded = False


def register_action(cls: type[Action]) -> type[Action]:
    """Class decorator: make an action available to rule packs under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    from importlib.metadata import entry_points  # only when a pack names an unknown action

    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not stop mailgate
            log.warning("action plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Action):
            _REGISTRY[ep.name] = loaded


def action_names() -> list[str]:
    """Every registered action name (built-in and from entry points)."""
    _load_builtin()
    _load_entry_points()
    return sorted(_REGISTRY)


def action_class(name: str) -> type[Action] | None:
    """The class registered under ``name``, or None."""
    _load_builtin()
    if name not in _REGISTRY:
        _load_entry_points()
    return _REGISTRY.get(name)


def _load_builtin() -> None:
    # importing the built-in modules runs their @register_action decorators (once)
    if "log_call" not in _REGISTRY:
        import engine.actions.items
        import engine.actions.messages
        import engine.actions.tasks  # noqa: F401


def build_action(cls: type[Action], params: Mapping[str, Any]) -> tuple[Action | None, list[Mistake]]:
    """Construct an action from YAML parameters; returns it or a list of (param, message) mistakes."""
    return build_from_params(cls, params, f"action {cls.name!r}")
