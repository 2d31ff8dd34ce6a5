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
_SUPPRESS_TOKENS = frozenset({"all", "oof", "autoreply"})  # X-Auto-Response-Suppress values of an auto-reply
# Subject prefixes of auto-replies, as Outlook, Exchange, Gmail, Apple Mail, Thunderbird and the
# webmail services write them in the languages the desk serves (en de fr es it nl pt sv da no fi
# pl cs ru uk ja zh ko tr); each is followed by a colon (ASCII or full-width, French spacing too).
_AUTO_REPLY_PREFIXES = (
    # en
    "automatic reply", "auto reply", "auto-reply", "autoreply", "auto response", "auto-response",
    "autoresponse", "out of office", "out of office reply", "out of office autoreply", "out of the office",
    "away from the office", "on vacation", "vacation reply",
    # de
    "automatische antwort", "abwesenheitsnotiz", "abwesenheit", "abwesend", "autom. antwort",
    "nicht im büro", "außer haus",
    # fr
    "réponse automatique", "reponse automatique", "absence du bureau", "absent du bureau", "absence",
    "réponse automatique d'absence du bureau",
    # es
    "respuesta automática", "respuesta automatica", "fuera de la oficina", "ausente",
    # it
    "risposta automatica", "fuori sede", "fuori ufficio", "assente",
    # nl
    "automatisch antwoord", "afwezig", "niet aanwezig", "automatisch bericht",
    # pt
    "resposta automática", "resposta automatica", "fora do escritório", "ausente do escritório", "ausência",
    # sv, da, no
    "autosvar", "automatiskt svar", "automatisk svar", "frånvarande", "inte på kontoret", "fraværende",
    "ikke på kontoret", "fravær", "ikke tilstede",
    # fi
    "automaattinen vastaus", "poissa toimistolta", "lomavastaaja",
    # pl
    "odpowiedź automatyczna", "automatyczna odpowiedź", "poza biurem", "nieobecność",
    # cs
    "automatická odpověď", "mimo kancelář", "nepřítomnost",
    # ru
    "автоматический ответ", "автоответ", "нет на месте", "вне офиса", "отсутствие на работе",
    # uk
    "автоматична відповідь", "автовідповідь", "поза офісом", "відсутній",
    # ja
    "自動応答", "自動返信", "自動送信", "不在", "不在通知", "外出中",
    # zh
    "自动答复", "自动回复", "自動回覆", "自動回復", "自動答覆", "外出", "不在办公室", "休假中",
    # ko
    "자동 회신", "자동 응답", "자동회신", "부재중", "부재 중",
    # tr
    "otomatik yanıt", "otomatik cevap", "ofis dışında", "izindeyim",
)  # fmt: skip
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|réf|rif|odp|ynt)\s*:\s*)?(?:"
    + "|".join(
        re.escape(p).replace(r"\ ", r"\s+") for p in sorted(_AUTO_REPLY_PREFIXES, key=len, reverse=True)
    )
    + r")\s*[:：]",
    re.IGNORECASE,
)
_MACHINE_REPORTS = {  # multipart/report types that are never a person's mail
    "feedback-report": "abuse or spam report (ARF feedback report)",
    "disposition-notification": "read receipt (disposition notification)",
}
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undelivered mail returned to sender|delivery status notification \((?:failure|delay)\)"
    r"|mail delivery failed|undeliverable\s*:|undelivered\s*:|returned mail\s*:|failure notice"
    r"|delivery failure|delivery has failed|mail delivery subsystem|message not delivered"
    r"|non-?deliverable|mail system error)",
    re.IGNORECASE,
)
# Where a bounce starts quoting the returned message; codes after this point belong to that message.
# A marker is a phrase set off by dashes, or one of the fixed sentences MTAs write; the plain words
# "the original message" also open Sendmail's report ("The original message was received at ..."),
# so they count only between dashes.
_RETURNED_COPY = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:the[ \t]+)?(?:original|undelivered|returned|unsent)[ \t]+message"
    r"|-*[ \t]*(?:this is a copy of the|below this line is a copy"
    r"|(?:original|unsent|returned)[ \t]+message[ \t]+(?:follows|headers|text)))",
    re.IGNORECASE | re.MULTILINE,
)
_CODE = r"(?<![\w.])([45]\d\d)(?![\w.])"
_SMTP_CODE_PATTERNS = (
    re.compile(_CODE + r"[ -]#?[245]\.\d{1,3}\.\d{1,3}\b"),
    re.compile(
        r"(?:\b|_)(?:said|says|replied|response|reply|answered|error|code|status|returned)\b"
        r"[^\n\d]{0,24}?" + _CODE,
        re.IGNORECASE,
    ),
    re.compile(r"(?:<<<|>>>|#)[ \t]*" + _CODE),
    re.compile(r":[ \t]+" + _CODE + r"[ :-]"),
    re.compile(r"^[ \t]*" + _CODE + r"[ :-]", re.MULTILINE),
)
# An enhanced status code (RFC 3463) alone, where no basic reply code is written.
_ENHANCED = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w.])")
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


def auto_submitted_reason(
    headers: HeaderValues,
    our_addresses: Collection[str],
    *,
    subject: str = "",
    report_types: Collection[str] = (),
) -> str | None:
    """Name the first sign that the mail was sent by a machine, or None for a person's mail."""
    auto = _first(headers, "auto-submitted")
    if auto is not None:
        token = re.split(r"[;(\s]", auto.strip(), maxsplit=1)[0].lower()
        if token and token != "no":
            return f"Auto-Submitted: {auto.strip()}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers:
            return f"{label} header present"
    suppress = _first(headers, "x-auto-response-suppress")
    if suppress is not None and {t.strip().lower() for t in suppress.split(",")} & _SUPPRESS_TOKENS:
        return f"X-Auto-Response-Suppress: {suppress.strip()}"
    for report_type, reason in _MACHINE_REPORTS.items():
        if report_type in report_types:
            return reason
    if _AUTO_REPLY_SUBJECT.match(subject):
        return f"auto-reply subject ({subject.strip()[:60]})"
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
    if "list-unsubscribe" in headers:
        return "mailing list or newsletter (List-Unsubscribe header present)"
    if any(value.strip().replace(" ", "") == "<>" for value in headers.get("return-path", ())):
        return "null sender (Return-Path: <>)"
    return None


def mail_system_sender(raw_from: str) -> str | None:
    """The mail system's name in a From header without an address, as bounces write it, else None.

    ``MAILER-DAEMON``, ``Mail Delivery Subsystem <MAILER-DAEMON>`` and ``<>`` name no mailbox a
    person could read, but they do say who sent the mail: the mail system. Read as that sender
    (``mailer-daemon``), such a mail is recognised as a bounce instead of being refused.
    """
    if re.search(r"<\s*@?\s*>", raw_from) or not raw_from.strip():  # the null address, as <> or <@>
        return "mailer-daemon"
    words = re.findall(r"[\w.+-]+", raw_from.lower())
    for word in words:
        if word in _BOUNCE_SENDERS:
            return str(word)
    return None


def basic_code(enhanced: str) -> int | None:
    """The SMTP reply code an enhanced status code (``5.1.1``) stands for, as MTAs pair them (RFC 3463)."""
    match = _ENHANCED.fullmatch(enhanced.strip())
    if match is None or match.group(1) == "2":
        return None
    permanent = match.group(1) == "5"
    subject, detail = int(match.group(2)), int(match.group(3))
    if not permanent:
        return 452 if (subject, detail) in ((2, 2), (3, 1), (5, 3)) else 450 if subject in (1, 2) else 451
    if subject == 1:  # addressing: no such mailbox (550), bad syntax (553 or 501)
        return 553 if detail == 3 else 501 if detail == 7 else 550
    if subject == 2:  # mailbox: disabled (550), full or message too big (552)
        return 552 if detail in (2, 3) else 550
    if subject == 3:  # mail system: message too big for it (552)
        return 552 if detail == 4 else 554
    if subject == 5:  # protocol: bad command (500), syntax (501), sequence (503)
        return {1: 500, 2: 501, 3: 452, 4: 501}.get(detail, 554)
    if subject == 7:  # policy and security: delivery not authorized
        return 550 if detail in (1, 0) else 554
    return 554


def find_smtp_code(text: str) -> int | None:
    """The first SMTP reply code (4xx/5xx) a bounce text names before the copy of the returned mail.

    Where the text writes only an enhanced status code (``Status: 5.1.1``), its reply code is used.
    """
    text = text[:50_000].replace("\r\n", "\n").replace("\r", "\n")  # CR-only mail has one long line
    copy = _RETURNED_COPY.search(text)
    region = text[: copy.start()] if copy else text
    best: tuple[int, int] | None = None
    for pattern in _SMTP_CODE_PATTERNS:
        match = pattern.search(region)
        if match and (best is None or match.start(1) < best[0]):
            best = (match.start(1), int(match.group(1)))
    if best is not None:
        return best[1]
    enhanced = _ENHANCED.search(region)
    return basic_code(enhanced.group(0)) if enhanced else None


def read_delivery_status(text: str) -> BounceVerdict:
    """Read a message/delivery-status body (RFC 3464) recipient by recipient.

    A recipient failed when its Action is failed or delayed (or, without an Action, its Status is
    4.x.x or 5.x.x); its code is the Diagnostic-Code's reply code, else its Status mapped to one.
    The verdict names a permanent (5xx) failure before a temporary one.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if _ACTION.search(b) or _STATUS.search(b)]
    failed_codes: list[int | None] = []
    any_failed = not blocks  # a report with no recipient fields at all says nothing was delivered
    for block in blocks:
        action = _ACTION.search(block)
        status = _STATUS.search(block)
        if action is not None:
            failed = action.group(1).lower() not in _SUCCESS_ACTIONS
        else:
            failed = status is not None and status.group(1) in "45"
        if not failed:
            continue
        any_failed = True
        code = None
        diagnostic = _DIAGNOSTIC.search(block)
        if diagnostic:
            found = re.search(_CODE, diagnostic.group(1))
            code = int(found.group(1)) if found else None
        if code is None and status is not None:
            code = basic_code(status.group(0).split(":", 1)[1])
        failed_codes.append(code)
    known = [c for c in failed_codes if c is not None]
    permanent = [c for c in known if c >= 500]
    chosen = permanent or known
    return BounceVerdict(any_failed, chosen[0] if chosen else None)


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
