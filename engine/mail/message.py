"""Turns raw RFC 5322 bytes into an immutable IncomingMessage, generously: only unusable mail is refused.

Contract: ``parse_message`` returns an ``IncomingMessage`` or raises ``MailError(reason)``; no other
exception escapes. Defects that still leave a usable message are listed in ``IncomingMessage.problems``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from engine.errors import MailError
from engine.mail.big_base64 import set_aside
from engine.mail.header_bounds import address_elements, check_header_block, check_part_headers, ledger_key
from engine.mail.machine_mail import auto_submitted_reason, detect_bounce, mail_system_sender
from engine.mail.mime_parser import parse_mime
from engine.mail.parts import MAX_MIME_DEPTH, Attachment, Problems, read_parts
from engine.mail.sender import sender_ambiguity
from engine.mail.text import (
    clean_line,
    decode_header_words,
    fix_escaped_bytes,
    repair_header_block,
    sanitize_filename,
)

__all__ = ["Attachment", "IncomingMessage", "parse_message", "reply_portion", "sanitize_filename"]


@dataclass(frozen=True)
class IncomingMessage:
    """One received mail, decoded and checked; ``key`` identifies it in the ledger."""

    raw_sha256: str
    message_id: str | None
    key: str
    from_address: str
    from_name: str
    reply_to: str | None
    to: tuple[str, ...]
    subject: str
    body: str
    body_was_html: bool
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    auto_submitted: bool
    auto_submitted_reason: str | None
    is_bounce: bool
    bounce_code: int | None
    attachments: tuple[Attachment, ...]
    date: datetime | None
    problems: tuple[str, ...]
    cc: tuple[str, ...] = ()  # Cc addresses, lower-cased
    # (lower-cased name, unfolded value) of the trace headers sender authentication reads
    # (engine/mail/authentication.py), top to bottom: Received, (ARC-)Authentication-Results, ARC-Seal
    trace_headers: tuple[tuple[str, str], ...] = ()
    sender_ambiguity: str | None = None  # why From/Sender name no one clear mailbox (mail/sender.py)
    # which field RFC 5322 allows once is repeated: a signature covers only one of its instances,
    # so no verdict vouches for the one read (engine/mail/authentication.py)
    repeated_field: str | None = None
    # a digest of From, Date and Subject: tells apart two mails that share a Message-ID
    fingerprint: str = ""


_FIRST_HEADER_LINE = re.compile(rb"From |[!-9;-~]+:")
# a match starts only where a run of address characters starts, so a long run is read once, not
# once per character (findall on 150 KB of letters took 35 s)
_ADDR_SPEC = re.compile(r"(?<![^@\s<>()\[\],;:\"])[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")
# an address found in a malformed header: standing on its own, not inside a quoted string or
# glued to another "@" (``"ada@example.com"@evil.example`` and ``ada@example.com@evil.example``
# are no mailbox of ada@example.com's)
_LOOSE_ADDR_SPEC = re.compile(r"(?<![^\s<,;:])[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+(?![^\s>,;])")
_SPECIALS = re.compile(r"[@\s<>()\[\],;:\"\\]")
_MESSAGE_ID = re.compile(r"<([^<>]*)>")
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")
_BARE_CR = re.compile(rb"\r(?!\n)")
TRACE_HEADERS = frozenset(("received", "authentication-results", "arc-authentication-results", "arc-seal"))
# the fields RFC 5322 (3.6) allows once that a decision reads; From and Sender: mail/sender.py
ONCE_ONLY = ("Subject", "Message-ID", "In-Reply-To", "References", "Reply-To", "To", "Cc", "Date")


class _Headers:
    """Header access that never raises: structured parsing first, raw text when that fails."""

    def __init__(self, msg: Message, problems: Problems) -> None:
        self._problems = problems
        self.values: dict[str, list[str]] = {}
        self.trace: list[tuple[str, str]] = []  # in order, across names: see IncomingMessage
        charset = _body_charset(msg)
        for name, value in msg.raw_items():
            unfolded = clean_line(fix_escaped_bytes(str(value), charset))
            key = str(name).strip().lower()
            self.values.setdefault(key, []).append(unfolded)
            if key in TRACE_HEADERS:
                self.trace.append((key, unfolded))

    def first(self, name: str) -> str | None:
        values = self.values.get(name.lower())
        return values[0] if values else None

    def text(self, name: str) -> str:
        """A header decoded for reading (RFC 2047 words decoded), or "" when absent."""
        raw = self.first(name)
        if raw is None:
            return ""
        decoded, problems = decode_header_words(raw)
        for problem in problems:
            self._problems.add(f"{name} header: {problem}")
        return clean_line(decoded)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, lower-cased addr-spec) for every usable address in a header."""
        raw = self.first(name)
        if raw is None:
            return []
        # one bounded address at a time, by the compat parser, which is linear and keeps display
        # names as written (encoded words, the comment form ``addr (Name)``): policy.default's is
        # quadratic (250 hostile addresses of 500 characters took it 4 s); docs/architecture.md, "Bounds"
        elements = address_elements(name, raw)
        found: list[tuple[str, str]] = []
        for element in elements:
            try:
                found.extend(getaddresses([element]))
            except Exception:  # RecursionError on comments nested hundreds deep
                self._problems.add(f"{name} header has an unreadable address, skipped")
        usable = [(self._name(display), _addr_spec(spec)) for display, spec in found]
        usable = [(display, spec) for display, spec in usable if _ADDR_SPEC.fullmatch(spec)]
        if not usable:
            loose = _LOOSE_ADDR_SPEC.findall
            usable = [("", spec.lower()) for element in elements for spec in loose(element)]
            if usable:
                self._problems.add(f"{name} header is malformed, found {usable[0][1]} in it")
        return usable

    def _name(self, display: str) -> str:
        """A display name as read: encoded words decoded (RFC 2047 6.2: no space between adjacent ones)."""
        display = fix_escaped_bytes(display)
        if "=?" in display:
            display, _ = decode_header_words(display)
        return clean_line(display).strip("\"' ")

    def message_ids(self, name: str) -> tuple[str, ...]:
        """The message ids named in a header, without angle brackets."""
        raw = " ".join(self.values.get(name.lower(), []))
        if "=?" in raw:  # ids must never be encoded, but some mailers (and older mailgate) did
            raw, _ = decode_header_words(raw)
        ids = [re.sub(r"\s+", "", found) for found in _MESSAGE_ID.findall(raw)]
        if not ids:
            ids = [token.strip("<>") for token in re.split(r"[\s,]+", raw)]
        return tuple(dict.fromkeys(i for i in ids if i))

    def date(self) -> datetime | None:
        raw = self.first("Date")
        if not raw:
            return None
        try:
            parsed = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            self._problems.add(f"unparseable Date header {raw[:80]!r} ignored")
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _addr_spec(spec: str) -> str:
    """An address lower-cased, with the encoded words some mailers (Python's own) write in it decoded.

    The words of the local part and of the domain are decoded each on its own, and only into
    plain text: words that would make an "@" or another special (``=?utf-8?q?ada=40example.com?=``)
    are left as written, and the address is then unreadable.
    """
    local, at, domain = spec.strip().rpartition("@")
    if at and "=?" in spec:
        local, domain = _plain_words(local), _plain_words(domain)
    return f"{local}{at}{domain}".lower()


def _plain_words(text: str) -> str:
    """``text`` with its encoded words decoded, unless that would add an address special."""
    if "=?" not in text:
        return text
    decoded, _ = decode_header_words(text)
    return text if _SPECIALS.search(decoded) else decoded


def _body_charset(msg: Message) -> str | None:
    """The charset of the first text part: the likeliest encoding of raw 8-bit header bytes."""
    part = msg
    for _ in range(MAX_MIME_DEPTH):
        charset = part.get_param("charset")
        if isinstance(charset, str):
            return charset
        payload = part.get_payload() if part.is_multipart() else None
        if not isinstance(payload, list) or not payload or not isinstance(payload[0], Message):
            return None
        part = payload[0]
    return None


def parse_message(
    raw: bytes, *, our_addresses: Collection[str] = (), max_header_bytes: int = 1_000_000
) -> IncomingMessage:
    """Raises MailError(reason) when the message cannot be handled; never any other exception."""
    try:
        return _parse(raw, our_addresses, max_header_bytes)
    except MailError:
        raise
    except RecursionError as exc:
        raise MailError("MIME structure is nested too deeply to read") from exc
    except Exception as exc:
        raise MailError(f"message could not be read ({type(exc).__name__}: {exc})") from exc


def _parse(raw: bytes, our_addresses: Collection[str], max_header_bytes: int) -> IncomingMessage:
    if not raw.strip():
        raise MailError("empty message")
    problems = Problems()
    data = raw.removeprefix(b"\xef\xbb\xbf").lstrip()
    if len(data) != len(raw):
        problems.add("blank lines or a byte-order mark before the headers were ignored")
    first_break = _LINE_BREAK.search(data, 0, 4096)
    if first_break is not None and first_break.group() == b"\r":  # old Mac mailers end lines in CR alone
        data = _BARE_CR.sub(b"\n", data)
        problems.add("lines end in a bare CR; read as line breaks")
    header_bytes = _header_block_size(data)
    check_header_block(data, header_bytes, max_header_bytes + 1)  # names the header over a bound
    if header_bytes > max_header_bytes:
        raise MailError(f"header block of {header_bytes} bytes exceeds the limit of {max_header_bytes}")
    data, repairs = repair_header_block(data, header_bytes)
    if not _FIRST_HEADER_LINE.match(data):
        raise MailError("not an email: no header lines found")
    for repair in repairs:
        problems.add(repair)
    # compat32 reads malformed MIME boundaries leniently and parses headers only when asked;
    # each header is read on its own, after check_part_headers measured them all.
    # Big base64 bodies are set aside first and decoded from ``data`` itself (engine/mail/big_base64.py).
    parsed_data, aside = set_aside(data)
    msg = parse_mime(parsed_data)  # BytesParser(policy=policy.compat32), without a pattern per boundary
    del parsed_data
    if not msg.keys():
        raise MailError("not an email: no header lines found")
    check_part_headers(msg)  # before any value is read
    headers = _Headers(msg, problems)

    raw_from = headers.first("From")
    if raw_from is None:
        raise MailError("no sender: From header missing")
    senders = headers.addresses("From")
    if not senders:
        system = mail_system_sender(raw_from)
        if system is None:
            raise MailError(f"no sender: From header unparseable ({raw_from[:120]!r})")
        problems.add(f"From header {raw_from[:80]!r} names no mailbox; read as the mail system ({system})")
        senders = [("", system)]
    from_name, from_address = senders[0]
    ambiguity = sender_ambiguity(
        headers.values.get("from", []), senders, headers.values.get("sender", []), headers.addresses("Sender")
    )
    reply_to = headers.addresses("Reply-To")
    message_ids = headers.message_ids("Message-ID")
    message_id = message_ids[0] if message_ids else None
    subject = headers.text("Subject")

    parts = read_parts(msg, problems, lambda inner: _Headers(inner, problems).text("Subject"), aside)
    bounce = detect_bounce(
        from_address=from_address,
        subject=subject,
        headers=headers.values,
        delivery_reports=parts.delivery_reports,
        report_types=parts.report_types,
        text=parts.body,
    )
    reason = auto_submitted_reason(
        headers.values, our_addresses, subject=subject, report_types=parts.report_types
    )
    if reason is None and bounce.is_bounce:
        reason = "bounce (delivery failure report)"
    if reason is None and (parts.delivery_reports or "delivery-status" in parts.report_types):
        reason = "delivery report (the message was delivered)"
    digest = hashlib.sha256(raw).hexdigest()
    return IncomingMessage(
        raw_sha256=digest,
        message_id=message_id,
        key=ledger_key(message_id, digest),
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to[0][1] if reply_to else None,
        to=tuple(dict.fromkeys(spec for _, spec in headers.addresses("To"))),
        cc=tuple(dict.fromkeys(spec for _, spec in headers.addresses("Cc"))),
        subject=subject,
        body=parts.body,
        body_was_html=parts.body_was_html,
        in_reply_to=headers.message_ids("In-Reply-To"),
        references=headers.message_ids("References"),
        auto_submitted=reason is not None,
        auto_submitted_reason=reason,
        is_bounce=bounce.is_bounce,
        bounce_code=bounce.code,
        attachments=parts.attachments,
        date=headers.date(),
        problems=problems.result(),
        trace_headers=tuple(headers.trace),
        sender_ambiguity=ambiguity,
        repeated_field=_repeated_field(headers.values),
        fingerprint=_fingerprint(from_address, headers.first("Date"), subject),
    )


def _repeated_field(values: dict[str, list[str]]) -> str | None:
    """``the mail has 2 Subject headers`` when a field RFC 5322 allows once is repeated, else None.

    A DKIM signature (and so a DMARC or ARC verdict) covers the bottom-most instance of a field,
    while the topmost is the one read: a signed mail replayed with a Subject added on top would
    otherwise carry a command its author never wrote.
    """
    for name in ONCE_ONLY:
        count = len(values.get(name.lower(), ()))
        if count > 1:
            return f"the mail has {count} {name} headers"
    return None


def _fingerprint(from_address: str, date: str | None, subject: str) -> str:
    """What tells a mail apart from another that reuses its Message-ID; Received headers play no part."""
    text = "\n".join((from_address, " ".join((date or "").split()), subject))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _header_block_size(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    return min(ends) + 1 if ends else len(data)


def reply_portion(body: str, ours: Callable[[], Sequence[str]] | None = None) -> str:
    """The new text of a reply, without the quoted earlier mail; the body unchanged if none is found.

    ``ours`` gives the text of the mails of ours it answers, asked for only when it is needed.
    """
    # imported here, at the first reply to one of our mails (append_history trims it): its
    # patterns take longer to compile than most modules take to import, and a start-up, or a
    # run without such a reply, needs none of them
    from engine.mail.reply_text import new_text_of_reply

    return new_text_of_reply(body, ours)
