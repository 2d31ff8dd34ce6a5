"""Recognises machine-sent mail: auto-replies (RFC 3834, common practice) and bounces (RFC 3464, plain text).

Both checks read only header values and already-decoded text, so they never raise on broken mail.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message

from engine.mail.text import clean_line, fix_escaped_bytes

HeaderValues = Mapping[str, Sequence[str]]
"""Header name in lower case -> every value of that header, unfolded."""

_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply", "auto-reply", "list"})
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undelivered mail returned to sender|delivery status notification \((?:failure|delay)\)"
    r"|mail delivery failed|undeliverable\s*:|undelivered\s*:|returned mail\s*:|failure notice"
    r"|delivery failure|delivery has failed|mail delivery subsystem|message not delivered"
    r"|non-?deliverable|mail system error)",
    re.IGNORECASE,
)
# Where a bounce starts quoting the returned message; codes after this point belong to that message.
_RETURNED_COPY = re.compile(
    r"^[ \t]*-*[ \t]*(?:this is a copy of the|below this line is a copy|original message"
    r"|undelivered message|returned message|the original message)",
    re.IGNORECASE | re.MULTILINE,
)
_CODE = r"(?<![\w.])([45]\d\d)(?![\w.])"
_SMTP_CODE_PATTERNS = (
    re.compile(_CODE + r"[ -]#?[245]\.\d{1,3}\.\d{1,3}\b"),
    re.compile(
        r"\b(?:said|says|replied|response|reply|answered|error|code|status|returned)\b[^\n\d]{0,24}?" + _CODE
    ),
    re.compile(r":[ \t]+" + _CODE + r"[ -]"),
    re.compile(r"^[ \t]*" + _CODE + r"[ -]\S", re.MULTILINE),
)
_DIAGNOSTIC = re.compile(r"^Diagnostic-Code:[ \t]*([^\n]*(?:\n[ \t]+[^\n]*)*)", re.IGNORECASE | re.MULTILINE)
_ACTION = re.compile(r"^Action:[ \t]*([A-Za-z-]+)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"^Status:[ \t]*([245])\.\d{1,3}\.\d{1,3}", re.IGNORECASE | re.MULTILINE)
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


@dataclass(frozen=True)
class BounceVerdict:
    """Whether a message reports a failed (or delayed) delivery, and the SMTP reply code it names."""

    is_bounce: bool
    code: int | None


def _first(headers: HeaderValues, name: str) -> str | None:
    values = headers.get(name, ())
    return values[0] if values else None


def auto_submitted_reason(headers: HeaderValues, our_addresses: Collection[str]) -> str | None:
    """Name the first header showing the mail was sent by a machine, or None for a person's mail."""
    auto = _first(headers, "auto-submitted")
    if auto is not None:
        token = re.split(r"[;(\s]", auto.strip(), maxsplit=1)[0].lower()
        if token and token != "no":
            return f"Auto-Submitted: {auto.strip()}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers:
            return f"{label} header present"
    precedence = _first(headers, "precedence")
    if precedence is not None and precedence.strip().lower() in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence.strip().lower()}"
    ours = [a.strip().lower() for a in our_addresses if a.strip()]
    for loop in headers.get("x-loop", ()):
        named = next((a for a in ours if a in loop.lower()), None)
        if named is not None:
            return f"X-Loop names our address {named}"
    list_id = _first(headers, "list-id")
    if list_id is not None:
        return f"mailing list (List-Id: {list_id.strip()})"
    if any(value.strip().replace(" ", "") == "<>" for value in headers.get("return-path", ())):
        return "null sender (Return-Path: <>)"
    return None


def find_smtp_code(text: str) -> int | None:
    """The first SMTP reply code (4xx/5xx) a bounce text names before the copy of the returned mail."""
    copy = _RETURNED_COPY.search(text, 0, 50_000)
    region = text[: copy.start()] if copy else text[:50_000]
    best: tuple[int, int] | None = None
    for pattern in _SMTP_CODE_PATTERNS:
        match = pattern.search(region)
        if match and (best is None or match.start(1) < best[0]):
            best = (match.start(1), int(match.group(1)))
    return best[1] if best else None


def read_delivery_status(text: str) -> BounceVerdict:
    """Read a message/delivery-status body: failed or delayed recipients, and the Diagnostic-Code's code."""
    actions = {a.lower() for a in _ACTION.findall(text)}
    statuses = set(_STATUS.findall(text))
    if actions:
        failed = not actions <= _SUCCESS_ACTIONS
    elif statuses:
        failed = bool(statuses & {"4", "5"})
    else:
        failed = True
    code = None
    for diagnostic in _DIAGNOSTIC.findall(text):
        match = re.search(_CODE, diagnostic)
        if match:
            code = int(match.group(1))
            break
    return BounceVerdict(failed, code)


def detect_bounce(
    *,
    from_address: str,
    subject: str,
    headers: HeaderValues,
    delivery_reports: Sequence[str],
    report_types: Collection[str],
    text: str,
) -> BounceVerdict:
    """Decide whether a message is a bounce, from its DSN parts, its sender, its subject and its text."""
    if delivery_reports or "delivery-status" in report_types:
        verdicts = [read_delivery_status(report) for report in delivery_reports]
        failed = not verdicts or any(v.is_bounce for v in verdicts)
        if not failed:
            return BounceVerdict(False, None)
        code = next((v.code for v in verdicts if v.code is not None), None)
        return BounceVerdict(True, code if code is not None else find_smtp_code(text))
    local_part = from_address.split("@", 1)[0]
    if local_part in _BOUNCE_SENDERS or _BOUNCE_SUBJECT.search(subject) or "x-failed-recipients" in headers:
        return BounceVerdict(True, find_smtp_code(text))
    return BounceVerdict(False, None)


def delivery_status_text(part: Message) -> str | None:
    """A message/delivery-status part as "Field: value" lines, or None when the parser kept it as text."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return None
    blocks: list[str] = []
    for block in payload:
        if isinstance(block, Message):
            lines = [f"{name}: {clean_line(str(value))}" for name, value in block.raw_items()]
            rest = block.get_payload()
            if isinstance(rest, str):
                lines.append(rest)
            blocks.append("\n".join(lines))
    return fix_escaped_bytes("\n\n".join(blocks))
