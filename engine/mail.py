"""Turns raw RFC 5322 bytes into an immutable IncomingMessage, generously: only unusable mail is refused.

Contract: ``parse_message`` returns an ``IncomingMessage`` or raises ``MailError(reason)``; no other
exception escapes. Defects that still leave a usable message are listed in ``IncomingMessage.problems``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from mailparser_reply import EmailReplyParser

from engine.bounce import auto_submitted_reason, delivery_status_text, detect_bounce
from engine.errors import MailError
from engine.mailtext import (
    clean_line,
    decode_header_words,
    decode_text,
    decode_transfer,
    fix_escaped_bytes,
    html_declared_charset,
    html_to_text,
    normalise_body,
    repair_header_block,
    sanitize_filename,
    unflow,
)

__all__ = ["Attachment", "IncomingMessage", "parse_message", "reply_portion", "sanitize_filename"]


@dataclass(frozen=True)
class Attachment:
    """A file carried by a message, with a name that is safe to use on any file system."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Size of the data in bytes."""
        return len(self.data)


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


_MAX_PROBLEMS = 50
_MAX_MIME_DEPTH = 64
_FIRST_HEADER_LINE = re.compile(rb"From |[!-9;-~]+:")
_ADDR_SPEC = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")
_MESSAGE_ID = re.compile(r"<([^<>]*)>")
_DELIVERY_STATUS_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
_EMBEDDED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_REPLY_LANGUAGES = ("en", "de", "fr", "es", "nl", "it", "sv")


class _Problems:
    """Collects distinct problem strings, keeping at most _MAX_PROBLEMS of them."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}
        self._dropped = 0

    def add(self, problem: str | None) -> None:
        if not problem or problem in self._items:
            return
        if len(self._items) < _MAX_PROBLEMS:
            self._items[problem] = None
        else:
            self._dropped += 1

    def result(self) -> tuple[str, ...]:
        items = list(self._items)
        if self._dropped:
            items.append(f"... and {self._dropped} more problems")
        return tuple(items)


class _Headers:
    """Header access that never raises: structured parsing first, raw text when that fails."""

    def __init__(self, msg: Message, problems: _Problems) -> None:
        self._problems = problems
        self.values: dict[str, list[str]] = {}
        charset = _body_charset(msg)
        for name, value in msg.raw_items():
            unfolded = clean_line(fix_escaped_bytes(str(value), charset))
            self.values.setdefault(str(name).strip().lower(), []).append(unfolded)

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
        found: list[tuple[str, str]] = []
        try:
            header: Any = policy.default.header_factory(name, raw)
            for address in header.addresses:
                found.append((str(address.display_name or ""), str(address.addr_spec)))
        except Exception:
            self._problems.add(f"{name} header could not be parsed strictly, read leniently")
            found = getaddresses([raw])
        usable = [(self._name(display), spec.strip().lower()) for display, spec in found]
        usable = [(display, spec) for display, spec in usable if _ADDR_SPEC.fullmatch(spec)]
        if not usable:
            usable = [("", spec.lower()) for spec in _ADDR_SPEC.findall(raw)]
            if usable:
                self._problems.add(f"{name} header is malformed, found {usable[0][1]} in it")
        return usable

    def _name(self, display: str) -> str:
        display = fix_escaped_bytes(display)
        if "=?" in display:
            display, _ = decode_header_words(display)
        return clean_line(display).strip("\"' ")

    def message_ids(self, name: str) -> tuple[str, ...]:
        """The message ids named in a header, without angle brackets."""
        raw = " ".join(self.values.get(name.lower(), []))
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


def _body_charset(msg: Message) -> str | None:
    """The charset of the first text part: the likeliest encoding of raw 8-bit header bytes."""
    part = msg
    for _ in range(_MAX_MIME_DEPTH):
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
    problems = _Problems()
    data = raw.removeprefix(b"\xef\xbb\xbf").lstrip()
    if len(data) != len(raw):
        problems.add("blank lines or a byte-order mark before the headers were ignored")
    header_bytes = _header_block_size(data)
    if header_bytes > max_header_bytes:
        raise MailError(f"header block of {header_bytes} bytes exceeds the limit of {max_header_bytes}")
    data, repairs = repair_header_block(data, header_bytes)
    if not _FIRST_HEADER_LINE.match(data):
        raise MailError("not an email: no header lines found")
    for repair in repairs:
        problems.add(repair)
    # compat32 reads malformed MIME boundaries leniently and parses headers only when asked;
    # structured header parsing (policy.default) is used per header, where it can fail safely.
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    if not msg.keys():
        raise MailError("not an email: no header lines found")
    headers = _Headers(msg, problems)

    raw_from = headers.first("From")
    if raw_from is None:
        raise MailError("no sender: From header missing")
    senders = headers.addresses("From")
    if not senders:
        raise MailError(f"no sender: From header unparseable ({raw_from[:120]!r})")
    from_name, from_address = senders[0]
    reply_to = headers.addresses("Reply-To")
    message_ids = headers.message_ids("Message-ID")
    message_id = message_ids[0] if message_ids else None
    subject = headers.text("Subject")

    parts = _read_parts(msg, problems)
    bounce = detect_bounce(
        from_address=from_address,
        subject=subject,
        headers=headers.values,
        delivery_reports=parts.delivery_reports,
        report_types=parts.report_types,
        text=parts.body,
    )
    reason = auto_submitted_reason(headers.values, our_addresses)
    if reason is None and "disposition-notification" in parts.report_types:
        reason = "read receipt (disposition notification)"
    if reason is None and bounce.is_bounce:
        reason = "bounce (delivery failure report)"
    digest = hashlib.sha256(raw).hexdigest()
    return IncomingMessage(
        raw_sha256=digest,
        message_id=message_id,
        key=message_id if message_id else f"sha256:{digest}",
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
    )


def _header_block_size(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    return min(ends) + 1 if ends else len(data)


def _describe_defect(defect: Exception) -> str:
    detail = str(defect) or (type(defect).__doc__ or "").strip().split("\n")[0]
    return f"MIME defect: {type(defect).__name__}" + (f" ({detail})" if detail else "")


@dataclass
class _Parts:
    body: str = ""
    body_was_html: bool = False
    attachments: tuple[Attachment, ...] = ()
    delivery_reports: list[str] = field(default_factory=list)
    report_types: set[str] = field(default_factory=set)


def _walk(root: Message, problems: _Problems) -> Iterator[tuple[Message, str]]:
    """Leaf parts in MIME order with their content types; embedded messages are leaves."""
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        ctype = _content_type(part, problems)
        for defect in part.defects:
            problems.add(_describe_defect(defect))
        if part.is_multipart() and not ctype.startswith("message/"):
            if ctype == "multipart/report":
                report_type = str(part.get_param("report-type", "") or "").lower()
                yield part, f"multipart/report; report-type={report_type}"
            if depth >= _MAX_MIME_DEPTH:
                problems.add(f"MIME parts nested deeper than {_MAX_MIME_DEPTH} levels were skipped")
                continue
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
        else:
            yield part, ctype


def _content_type(part: Message, problems: _Problems) -> str:
    try:
        return part.get_content_type()
    except Exception:
        problems.add("unreadable Content-Type header, part treated as text/plain")
        return "text/plain"


def _read_parts(msg: Message, problems: _Problems) -> _Parts:
    parts = _Parts()
    found: list[tuple[Message, str, str | None, str | None]] = []  # part, type, file name, disposition
    body_part: Message | None = None
    html_part: Message | None = None
    for part, ctype in _walk(msg, problems):
        if ctype.startswith("multipart/report; report-type="):
            parts.report_types.add(ctype.split("=", 1)[1])
            continue
        if ctype in _DELIVERY_STATUS_TYPES:
            report = delivery_status_text(part)
            parts.delivery_reports.append(report if report is not None else _part_text(part, problems))
            continue
        disposition, filename = _disposition(part, problems)
        if ctype.startswith("multipart/"):
            problems.add(f"{ctype} part has no readable parts, its content was read as plain text")
            ctype = "text/plain"
        if ctype in ("text/plain", "text/html") and disposition != "attachment":
            if ctype == "text/plain":
                body_part = body_part or part
            else:
                html_part = html_part or part
        elif not (ctype in _EMBEDDED_MESSAGE_TYPES or disposition == "attachment" or filename is not None):
            continue
        found.append((part, ctype, filename, disposition))
    if body_part is not None:
        parts.body = _part_text(body_part, problems)
    if html_part is not None and (body_part is None or not parts.body.strip()):
        parts.body, problem = html_to_text(_decoded_text(html_part, problems, html=True))
        parts.body_was_html = True
        problems.add(problem)
    attachments: list[Attachment] = []
    for part, ctype, filename, disposition in found:
        index = len(attachments) + 1
        if part is body_part or (part is html_part and parts.body_was_html):
            continue
        if ctype in _EMBEDDED_MESSAGE_TYPES:
            attachments.append(_embedded_message(part, index, problems))
        elif filename is not None or disposition == "attachment":
            data = _part_bytes(part, problems)
            attachments.append(Attachment(sanitize_filename(filename, index), ctype, data))
    parts.attachments = tuple(attachments)
    return parts


def _disposition(part: Message, problems: _Problems) -> tuple[str | None, str | None]:
    try:
        disposition = part.get_content_disposition()
    except Exception:
        problems.add("unreadable Content-Disposition header ignored")
        disposition = None
    try:
        filename = part.get_filename()
    except Exception:
        problems.add("unreadable attachment file name ignored")
        filename = None
    if filename is not None and ("\ufffd" in filename or _has_8bit_params(part)):
        filename = _raw_filename(part) or filename
    if filename is not None:
        filename = fix_escaped_bytes(str(filename))
        if "=?" in filename:
            filename, _ = decode_header_words(filename)
    return disposition, filename


_RAW_FILENAME = re.compile(r"""(?:^|;)\s*(file)?name\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)


def _has_8bit_params(part: Message) -> bool:
    return any(
        header.lower() in ("content-disposition", "content-type") and re.search("[\udc80-\udcff]", str(value))
        for header, value in part.raw_items()
    )


def _raw_filename(part: Message) -> str | None:
    """The file name as written in the raw headers, for 8-bit names the parser decoded lossily."""
    names: dict[bool, str] = {}
    for header, value in part.raw_items():
        if header.lower() in ("content-disposition", "content-type"):
            for match in _RAW_FILENAME.finditer(clean_line(fix_escaped_bytes(str(value)))):
                names.setdefault(bool(match.group(1)), match.group(2) or match.group(3))
    return names.get(True) or names.get(False)


def _part_bytes(part: Message, problems: _Problems) -> bytes:
    """The decoded content of a leaf part (the parser's own decoding re-decodes 8-bit text lossily)."""
    payload = getattr(part, "_payload", None)
    if isinstance(payload, bytes):
        raw = payload
    elif isinstance(payload, str):
        try:
            raw = payload.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = payload.encode("utf-8", "replace")
    else:
        return b""
    encoding = str(part.get("content-transfer-encoding", "") or "")
    data, problem = decode_transfer(raw, encoding)
    problems.add(problem)
    return data


def _decoded_text(part: Message, problems: _Problems, *, html: bool = False) -> str:
    """The text of a part: transfer encoding undone, charset decoded, format=flowed joined."""
    data = _part_bytes(part, problems)
    try:
        charset = part.get_content_charset()
        text_format = str(part.get_param("format", "") or "").lower()
        delsp = str(part.get_param("delsp", "") or "").lower() == "yes"
    except Exception:
        problems.add("unreadable Content-Type parameters ignored")
        charset, text_format, delsp = None, "", False
    if charset is None and html:
        charset = html_declared_charset(data)
    text, problem = decode_text(data, charset)
    problems.add(problem)
    if text_format == "flowed" and not html:
        text = unflow(text.replace("\r\n", "\n"), delsp)
    return text


def _part_text(part: Message, problems: _Problems) -> str:
    return normalise_body(_decoded_text(part, problems))


def _embedded_message(part: Message, index: int, problems: _Problems) -> Attachment:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        return Attachment(sanitize_filename(None, index), "message/rfc822", _part_bytes(part, problems))
    data = _message_bytes(inner, problems)
    subject = _Headers(inner, problems).text("Subject")
    name = subject.replace("/", "_").replace("\\", "_") + ".eml" if subject else f"message-{index}.eml"
    return Attachment(sanitize_filename(name, index), "message/rfc822", data)


class _VerbatimPolicy(Compat32):
    """Writes headers back as they were read: no refolding, no encoding, 8-bit bytes kept."""

    def fold(self, name: str, value: str) -> str:
        return f"{name}: " + self.linesep.join(str(value).splitlines()) + self.linesep

    def fold_binary(self, name: str, value: str) -> bytes:
        return self.fold(name, value).encode("utf-8", "surrogateescape")


_VERBATIM = _VerbatimPolicy()


def _message_bytes(msg: Message, problems: _Problems) -> bytes:
    """The bytes of an embedded message, written back as close to the original as the parser allows."""
    for writer in (_VERBATIM, policy.compat32):
        try:
            return msg.as_bytes(policy=writer)
        except Exception:
            continue
    problems.add("an attached message could not be written back, only its headers and text were kept")
    head = "".join(f"{name}: {value}\n" for name, value in msg.raw_items())
    payload = msg.get_payload()
    body = payload if isinstance(payload, str) else ""
    return (head + "\n" + body).encode("utf-8", "surrogateescape")


def reply_portion(body: str) -> str:
    """The new text of a reply, without the quoted earlier mail; the body unchanged if none is found."""
    try:
        message = EmailReplyParser(languages=list(_REPLY_LANGUAGES)).read(body)
        replies = list(message.replies)
        latest = message.latest_reply
    except Exception:
        return body
    if len(replies) < 2 or not isinstance(latest, str) or not latest.strip():
        return body
    return latest
