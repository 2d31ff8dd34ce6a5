"""Whether a mail's sender is one clear mailbox, and an address reduced to the mailbox it reaches.

A sender is **ambiguous** when the headers could make a person (or a rule) believe the mail came
from someone other than the mailbox we would look up: several From headers, several mailboxes in
From (even one we cannot read: ``carl@example.com, "x"@evil.example``), From in group syntax
(``carl@example.com: <attacker@evil.example>``, or a ``;`` as in ``carl@example.com;dmarc=pass``,
which a DMARC check may copy into its verdict), bidirectional controls that reorder what a reader
sees (a display name of U+202E and ``moc.elpmaxe@lrac`` shows ``carl@example.com``), a display
name or comment holding another address (``"carl@example.com" <attacker@evil.example>``), a From
address that reads as another (full-width ``ｃａｒｌ@example.com``), or a Sender header naming
another mailbox than From (mailing lists do this; their mail then counts as from an unknown
sender). An ambiguous sender is treated as unknown: nobody is looked up for it, it is not
authenticated, and it gets no automatic answer; ``mailgate explain`` prints the reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from engine.mail.header_bounds import address_elements
from engine.mail.text import decode_header_words

# embeddings, overrides and isolates: U+202E then "moc.elpmaxe@ada" is shown as "ada@example.com"
_REORDERING = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+\.[^@\s<>()\[\],;:\"']+")


def mailbox_key(address: str) -> str:
    """The mailbox an address reaches: lower-cased, plus tag dropped (``Ann+x@Ex.com`` -> ``ann@ex.com``)."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain
    base = local.split("+", 1)[0]
    return f"{base or local}@{domain}"


def has_group_syntax(value: str) -> bool:
    """Whether an address header uses group syntax: ``:`` or ``;`` outside quotes, comments, ``<>``."""
    in_quote = in_angle = escaped = False
    comment_depth = 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (in_quote or comment_depth):
            escaped = True
        elif in_quote:
            in_quote = char != '"'
        elif comment_depth:
            comment_depth += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            in_quote = True
        elif char == "(":
            comment_depth = 1
        elif char in "<>":
            in_angle = char == "<"
        elif char in ":;" and not in_angle:
            return True
    return False


def as_seen(text: str) -> str:
    """Text as a reader takes it: compatibility forms folded (``＠`` is ``@``), invisible ones dropped."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(char for char in folded if unicodedata.category(char) != "Cf").lower()


def addresses_named(value: str) -> list[str]:
    """Every distinct address written anywhere in a header (display names and comments too), as seen.

    Read as a person sees it (``as_seen``): ``ada＠example.com`` and ``ada﹫example.com`` name
    ``ada@example.com``.
    """
    decoded, _ = decode_header_words(value)
    return list(dict.fromkeys(found.strip(".") for found in _ADDRESS.findall(as_seen(decoded))))


def sender_ambiguity(
    from_values: Sequence[str],
    from_mailboxes: Sequence[tuple[str, str]],
    sender_values: Sequence[str] = (),
    sender_mailboxes: Sequence[tuple[str, str]] = (),
) -> str | None:
    """Why the sender is ambiguous, or None when From (and Sender, if any) name one clear mailbox.

    ``from_values``/``sender_values``: every From/Sender header as written (unfolded);
    ``*_mailboxes``: the (display name, lower-cased address) pairs read from the first of each.
    """
    if len(from_values) > 1:
        return f"the mail has {len(from_values)} From headers"
    raw = from_values[0] if from_values else ""
    if has_group_syntax(raw):
        return f"From uses group syntax ({_short(raw)})"
    if _REORDERING.search(decode_header_words(raw)[0]):
        return "From holds bidirectional controls that reorder what a reader sees"
    if len(from_mailboxes) > 1:
        listed = ", ".join(spec for _, spec in from_mailboxes)
        return f"From names {len(from_mailboxes)} mailboxes ({listed})"
    # an entry we cannot read as a mailbox may be one to what else reads From (a mail program, our
    # boundary's DMARC check): ``ada@example.com, "x"@evil.example``
    entries = [e for e in address_elements("From", raw) if "@" in e or "<" in e]
    if len(entries) > 1:
        return f"From holds {len(entries)} addresses where one mailbox belongs ({_short(raw)})"
    written = from_mailboxes[0][1] if from_mailboxes else ""
    address = as_seen(written)
    if address != written:  # "ａｄａ@example.com", "ad\u00ada@example.com": looked up as nobody, read as Ada
        return f"the From address {written!r} reads as {address}"
    display = from_mailboxes[0][0] if from_mailboxes else ""
    for named in addresses_named(display):
        if named != address:
            return f"the From display name {display!r} looks like another address than the sender's {address}"
    others = [named for named in addresses_named(raw) if named != address]
    if others:
        return f"From names another address ({others[0]}) besides {address}"
    present = [value for value in sender_values if value.strip()]
    if len(present) > 1:
        return f"the mail has {len(present)} Sender headers"
    if present:
        senders = {as_seen(spec) for _, spec in sender_mailboxes} or set(addresses_named(present[0]))
        if senders != {address}:
            shown = ", ".join(sorted(senders)) or _short(present[0])
            return f"Sender ({shown}) differs from From ({address})"
    return None


def _short(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."
