"""Deciding one message: its subject parsed, its facts gathered, the first rule of its pack that holds.

``decide`` is the only place a message is decided: ``engine.pipeline`` acts on the ``Decision``
and ``mailgate explain`` (``engine.rules.explain``) prints it, so the two cannot disagree. Both ask for
the trace of every rule tried: the pipeline keeps it with the ledger entry, for the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlmodel import Session

from engine.config.model import AccountConfig, Config
from engine.mail.authentication import NOT_CHECKED, SenderAuthentication
from engine.mail.message import IncomingMessage
from engine.rules.facts import FactValue
from engine.rules.gather import Situation, gather_facts
from engine.rules.pack import Rule, RulePack, RuleTried, Step
from engine.rules.subject import ParsedSubject, parse_subject


@dataclass(frozen=True)
class Decision:
    """What was decided for one message, and from what.

    ``subject`` is the subject as decided: as parsed, or, when it names no item, an update of the
    item a valid reply token names (``engine.rules.gather``).
    ``rule`` is None when no rule holds (the pipeline quarantines the message). ``steps`` are the
    chosen rule's steps, each with whether its own ``when:`` holds (only those run). ``tried`` is
    every rule tried, in order, with the part of its condition that failed; it is empty unless
    ``decide`` was asked to ``trace``.
    """

    subject: ParsedSubject
    situation: Situation
    rule: Rule | None
    steps: tuple[tuple[Step, bool], ...] = ()
    tried: tuple[RuleTried, ...] = ()

    @property
    def facts(self) -> Mapping[str, FactValue]:
        """The facts the rules were tested against."""
        return self.situation.facts


def decide(
    session: Session,
    config: Config,
    account: AccountConfig,
    pack: RulePack,
    message: IncomingMessage,
    *,
    trace: bool = False,
    authentication: SenderAuthentication = NOT_CHECKED,
    subject: ParsedSubject | None = None,
) -> Decision:
    """Parse the subject, gather the facts and choose the rule; ``trace`` also records each rule tried.

    ``authentication``: ``authenticate_sender``'s verdict on the sender (the sender.* facts).
    ``subject``: the subject as ``pack.keywords`` read it, if the caller has it already.

    Reads through ``session`` and writes nothing.
    """
    parsed = subject if subject is not None else parse_subject(message.subject, pack.keywords)
    situation = gather_facts(session, config, account, message, parsed, authentication)
    subject = situation.subject or parsed  # a reply token may thread a subject that names no item
    choice = pack.choose(situation.facts)
    return Decision(subject, situation, choice.rule, choice.steps, choice.tried if trace else ())
