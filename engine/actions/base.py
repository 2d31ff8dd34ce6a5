"""The action interface and the per-message context actions work in.

An action is a small frozen dataclass whose fields are exactly its YAML parameters. The rule-pack
loader finds its class by name (``engine.actions.registry``), builds it from ``- do: NAME`` plus
the other keys of the step, checks the parameter types, and calls ``check`` so that a mistake is
refused at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlmodel import Session

from engine.config.model import AccountConfig, Config
from engine.mail.authentication import NOT_CHECKED, SenderAuthentication
from engine.mail.message import IncomingMessage
from engine.rules.facts import FactValue
from engine.rules.subject import ParsedSubject
from engine.storage.items import Item, ItemStore
from engine.storage.models import OutboxMessage, Person, utcnow

if TYPE_CHECKING:
    from engine.rules.pack import RulePack

__all__ = ["Action", "ActionContext", "Item"]


@dataclass
class ActionContext:
    """Everything one message's actions may read, and what they report back.

    Built fresh for each message and thrown away afterwards; actions write only through
    ``store`` (engine/storage/items.py; the outbox through engine/outgoing/outbox.py), inside the
    message's single transaction, and never commit. ``session`` is there for reading.
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
    authentication: SenderAuthentication = NOT_CHECKED  # whether the sender is who From says
    reason: str | None = None  # why the message got its outcome (the result's and the ledger's reason)

    store: ItemStore = field(init=False, repr=False)  # how actions write items, people, history

    def __post_init__(self) -> None:
        self.store = ItemStore(self.session)
        if self.target is not None:
            self.item, self.entity, self.number = self.target, self.target_entity, self.target.number

    def flag(self, name: str) -> bool:
        """An account flag's value."""
        return bool(getattr(self.account.flags, name))


class Action:
    """Base of every action.

    Contract: subclasses are ``@dataclass(frozen=True)``; each field is a YAML parameter with a
    plain type (str, int, bool, str | None, or a Literal of strings) and a default when optional.
    ``run`` performs the effect through ``ctx.store`` (and the outbox) only; it must not commit, must not send
    mail itself (it queues into the outbox), and must leave the database consistent if it raises
    (the pipeline rolls the whole message back and quarantines it). ``check`` returns the
    mistakes that only the pack can reveal (e.g. a template that does not exist).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # the extra installing the libraries it needs, if any
    requires: ClassVar[tuple[str, ...]] = ()  # those libraries' import names, checked when it is looked up

    def run(self, ctx: ActionContext) -> None:
        """Perform the action for one message."""
        raise NotImplementedError

    def check(self, pack: RulePack) -> list[str]:
        """Problems with this step that depend on the pack (none by default)."""
        return []
