"""The facts a rule's conditions can read, declared once with their types.

Facts are computed per message by ``engine.rules.gather.gather_facts``; this module only says which
names exist and what values they take, so that ``mailgate check`` can refuse a pack that asks
for a fact that does not exist or compares it with a value it can never have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from engine.config.model import Flags
from engine.mail.authentication import METHODS
from engine.rules.subject import Intent

FactValue = bool | int | str | None


@dataclass(frozen=True)
class FactSpec:
    """One fact: its name, the Python type of its value, the allowed values of an enum, and a help text."""

    name: str
    kind: type
    help: str
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def accepts(self, value: object) -> bool:
        """Whether a value written in a rule pack can ever equal this fact."""
        if value is None:
            return self.nullable
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, str) and (not self.choices or value in self.choices)

    def describe_type(self) -> str:
        """A human description of the values this fact takes."""
        if self.choices:
            base = "one of " + ", ".join(self.choices)
        else:
            base = {bool: "true or false", int: "a whole number", str: "a string"}[self.kind]
        return base + (" or null" if self.nullable else "")


TARGET_KINDS = ("call", "request", "task", "approval", "user_approval")
REPLY_TOKEN_STATES = ("valid", "other_item", "refused", "none")
TARGET_STATUSES = ("open", "closed", "pending", "approved", "rejected", "cancelled")


def _declare() -> dict[str, FactSpec]:
    specs = [
        FactSpec("intent", str, "what the subject line asks for", tuple(i.value for i in Intent)),
        FactSpec("number", int, "the item number in the subject", nullable=True),
        FactSpec("bracketed", bool, "the subject used a bracketed tag like [CALL#12]"),
        FactSpec("sender.known", bool, "the sender's address belongs to a person on record"),
        FactSpec(
            "sender.ambiguous",
            bool,
            "From/Sender do not name one clear mailbox (the sender is then treated as unknown)",
        ),
        FactSpec("sender.is_user", bool, "the sender is flagged as a User"),
        FactSpec("sender.is_analyst", bool, "the sender is an analyst"),
        FactSpec("sender.take_over", bool, "the sender has the take-over right"),
        FactSpec("sender.is_target_user", bool, "the sender is the User of the target item"),
        FactSpec("sender.owns_target", bool, "the sender is the target's assigned analyst"),
        FactSpec("sender.is_approver", bool, "the sender is the target task's approver or in its group"),
        FactSpec(
            "sender.authenticated",
            bool,
            "the sender is who From says (trusted results, own DKIM/DMARC check, ARC, a reply token)",
        ),
        FactSpec("sender.authentication", str, "how the sender was authenticated (none: not)", METHODS),
        FactSpec("target.exists", bool, "the item the subject names exists"),
        FactSpec("target.kind", str, "kind of the target item", TARGET_KINDS, nullable=True),
        FactSpec("target.status", str, "status of the target item", TARGET_STATUSES, nullable=True),
        FactSpec("target.closed", bool, "the target is a closed call"),
        FactSpec("target.is_approval", bool, "the target is an approval or user-approval task"),
        FactSpec(
            "target.decided", bool, "the target task was already approved, rejected, closed or cancelled"
        ),
        FactSpec("message.is_reply_to_us", bool, "the mail answers one of our outgoing messages"),
        FactSpec(
            "message.reply_token",
            str,
            "the reply token the mail quotes: valid (signed for this sender, about the target), other_item,"
            " refused (forged, for another recipient, or expired), none",
            REPLY_TOKEN_STATES,
        ),
        FactSpec("message.auto_submitted", bool, "the mail was sent by a machine (RFC 3834 and kin)"),
        FactSpec("message.is_bounce", bool, "the mail is a delivery failure report"),
        FactSpec("message.bounce_code", int, "the SMTP code of a bounce", nullable=True),
        FactSpec("message.has_attachments", bool, "the mail carries attachments"),
        FactSpec(
            "settings.email_at_update_via_email_in",
            bool,
            "the global setting: notify the assignee when email updates a call",
        ),
    ]
    specs += [FactSpec(f"flags.{f.name}", bool, f"the account flag {f.name}") for f in fields(Flags)]
    return {s.name: s for s in specs}


FACTS: Mapping[str, FactSpec] = _declare()
