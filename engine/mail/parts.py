"""Reads the MIME parts of a parsed message: its body text, its attachments and its delivery reports.

Contract: ``read_parts`` never raises for a malformed part; what it had to skip, guess or repair is
added to the ``Problems`` collector it is given. Header reading stays in ``engine.mail.message``, which passes
in how to read an embedded message's Subject (used to name it ``<subject>.eml``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.policy import Compat32

from engine.mail.big_base64 import SetAside
from engine.mail.html_text import html_declared_charset, html_to_text
from engine.mail.machine_mail import delivery_status_text
from engine.mail.text import (
    clean_line,
    decode_header_words,
    decode_text,
    decode_transfer,
    fix_escaped_bytes,
    normalise_body,
    sanitize_filename,
    transfer_encoding_name,
    unflow,
)

__all__ = ["MAX_MIME_DEPTH", "Attachment", "Parts", "Problems", "read_parts"]

MAX_MIME_DEPTH = 64
_MAX_PROBLEMS = 50
_DELIVERY_STATUS_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
_EMBEDDED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_SEQUENCE_TYPES = frozenset({"multipart/mixed", "multipart/parallel"})  # parts shown one after another
_RAW_FILENAME = re.compile(r"""(?:^|;)\s*(file)?name\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)


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


class Problems:
    """Collects distinct problem strings, keeping at most _MAX_PROBLEMS of them."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}
        self._dropped = 0

    def add(self, problem: str | None) -> None:
        """Record a problem once; None and repeats are ignored."""
        if not problem or problem in self._items:
            return
        if len(self._items) < _MAX_PROBLEMS:
            self._items[problem] = None
        else:
            self._dropped += 1

    def result(self) -> tuple[str, ...]:
        """The problems in the order first seen, with a count of those dropped over the limit."""
        items = list(self._items)
        if self._dropped:
            items.append(f"... and {self._dropped} more problems")
        return tuple(items)


@dataclass(frozen=True)
class Parts:
    """What the MIME parts of a message hold: body text, attachments and delivery reports."""

    body: str = ""
    body_was_html: bool = False
    attachments: tuple[Attachment, ...] = ()
    delivery_reports: tuple[str, ...] = ()
    report_types: frozenset[str] = frozenset()


def read_parts(
    msg: Message,
    problems: Problems,
    subject_of: Callable[[Message], str],
    aside: SetAside | None = None,
) -> Parts:
    """Body (plain text preferred, else HTML as text), attachments and delivery reports of a message.

    ``subject_of`` returns the decoded Subject of an embedded message, or "" when it has none;
    ``aside`` is what ``engine.mail.big_base64.set_aside`` took out of the bytes the parser read.
    """
    delivery_reports: list[str] = []
    report_types: set[str] = set()
    found: list[tuple[Message, str, str | None, str | None]] = []  # part, type, file name, disposition
    texts: dict[str, list[tuple[Message, int | None, bool]]] = {"text/plain": [], "text/html": []}
    for part, ctype, group in _walk(msg, problems):
        if ctype.startswith("multipart/report; report-type="):
            report_types.add(ctype.split("=", 1)[1])
            continue
        if ctype in _DELIVERY_STATUS_TYPES:
            report = delivery_status_text(part)
            if report is not None and aside is not None:
                report = aside.restore_text(report)
            delivery_reports.append(report if report is not None else _part_text(part, problems, aside))
            continue
        disposition, filename = _disposition(part, problems)
        if ctype.startswith("multipart/"):
            problems.add(f"{ctype} part has no readable parts, its content was read as plain text")
            ctype = "text/plain"
        if ctype in texts and disposition != "attachment":
            texts[ctype].append((part, group, filename is not None))
        elif not (ctype in _EMBEDDED_MESSAGE_TYPES or disposition == "attachment" or filename is not None):
            continue
        found.append((part, ctype, filename, disposition))
    # plain text preferred, else HTML; a text with a file name only when no other says anything
    body, body_was_html = "", False
    body_parts: list[Message] = []
    for kind, named in (
        ("text/plain", False),
        ("text/html", False),
        ("text/plain", True),
        ("text/html", True),
    ):
        parts = _body_parts(texts[kind], named=named)
        if not parts:
            continue
        text = _body_text(parts, kind == "text/html", problems, aside)
        if text.strip() or not body_parts:
            body, body_parts, body_was_html = text, parts, kind == "text/html"
        if text.strip():
            break
    attachments: list[Attachment] = []
    for part, ctype, filename, disposition in found:
        index = len(attachments) + 1
        if any(part is used for used in body_parts):
            continue
        if ctype in _EMBEDDED_MESSAGE_TYPES:
            attachments.append(_embedded_message(part, index, problems, subject_of, aside))
        elif filename is not None or disposition == "attachment":
            data = _part_bytes(part, problems, aside)
            attachments.append(Attachment(sanitize_filename(filename, index), ctype, data))
    return Parts(
        body=body,
        body_was_html=body_was_html,
        attachments=tuple(attachments),
        delivery_reports=tuple(delivery_reports),
        report_types=frozenset(report_types),
    )


def _describe_defect(defect: Exception) -> str:
    detail = str(defect) or (type(defect).__doc__ or "").strip().split("\n")[0]
    return f"MIME defect: {type(defect).__name__}" + (f" ({detail})" if detail else "")


def _body_parts(candidates: list[tuple[Message, int | None, bool]], *, named: bool) -> list[Message]:
    """The parts of one kind (plain or HTML) that together are the body, in MIME order.

    A client that puts an attachment in the middle of the text (Apple Mail) writes the text after it
    as another inline part of the multipart/mixed: every such part is body (RFC 2046 5.1.3: a mixed
    multipart's parts are shown one after the other). Of any other multipart (alternative, related,
    report, signed) only its first part of the kind counts. With ``named``, the first part with a
    file name: a file, the body only when no unnamed text is there.
    """
    if named:
        return [part for part, _, has_name in candidates if has_name][:1]
    chosen: list[Message] = []
    seen: set[int] = set()
    for part, group, has_name in candidates:
        if not has_name and (group is None or group not in seen):
            chosen.append(part)
            if group is not None:
                seen.add(group)
    return chosen


def _body_text(parts: list[Message], html: bool, problems: Problems, aside: SetAside | None) -> str:
    """The text of the body parts, one after the other; HTML read as text."""
    texts: list[str] = []
    for part in parts:
        if html:
            text, problem = html_to_text(_decoded_text(part, problems, aside, html=True))
            problems.add(problem)
        else:
            text = _part_text(part, problems, aside)
        texts.append(text)
    return "\n\n".join(text for text in texts if text.strip()) if len(texts) > 1 else texts[0]


def _walk(root: Message, problems: Problems) -> Iterator[tuple[Message, str, int | None]]:
    """Leaf parts in MIME order with their content types and the multipart they are one of.

    That multipart is given by its ``id``, None for a part of a multipart/mixed (or of none): a
    mixed multipart's parts all count, of another only one does. Embedded messages are leaves.
    """
    stack: list[tuple[Message, int, int | None]] = [(root, 0, None)]
    while stack:
        part, depth, group = stack.pop()
        ctype = _content_type(part, problems)
        for defect in part.defects:
            problems.add(_describe_defect(defect))
        if part.is_multipart() and not ctype.startswith("message/"):
            if ctype == "multipart/report":
                report_type = str(part.get_param("report-type", "") or "").lower()
                yield part, f"multipart/report; report-type={report_type}", group
            if depth >= MAX_MIME_DEPTH:
                problems.add(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels were skipped")
                continue
            inner = None if ctype in _SEQUENCE_TYPES else id(part)
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1, inner) for c in reversed(children) if isinstance(c, Message))
        else:
            yield part, ctype, group


def _content_type(part: Message, problems: Problems) -> str:
    try:
        return part.get_content_type()
    except Exception:
        problems.add("unreadable Content-Type header, part treated as text/plain")
        return "text/plain"


def _disposition(part: Message, problems: Problems) -> tuple[str | None, str | None]:
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
    encoded = _rfc2231_filename(part, problems) if filename is not None else None
    if encoded is not None:
        filename = encoded
    elif filename is not None and ("\ufffd" in filename or _has_8bit_params(part)):
        filename = _raw_filename(part) or filename
    if filename is not None:
        filename = fix_escaped_bytes(str(filename))
        if "=?" in filename:
            filename, _ = decode_header_words(filename)
    return disposition, filename


def _rfc2231_filename(part: Message, problems: Problems) -> str | None:
    """An RFC 2231 file name (``filename*=utf-8''…``) decoded as any text is: a wrong label noticed."""
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        try:
            value = part.get_param(param, None, header)
        except Exception:
            return None
        if value is None:
            continue
        if not isinstance(value, tuple):
            return None
        charset, _, text = value
        try:
            data = bytes(str(text), "raw-unicode-escape")
        except (UnicodeError, ValueError):
            return None
        decoded, problem = decode_text(data, charset or None)
        if problem:
            problems.add(f"attachment name: {problem}")
        return decoded.strip()
    return None


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


def _part_bytes(part: Message, problems: Problems, aside: SetAside | None) -> bytes:
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
    if aside is not None and aside.holds_token(raw):
        if transfer_encoding_name(encoding) == "base64":
            decoded = aside.decode_base64(raw)
            if decoded is not None:
                return decoded
        raw = aside.restore(raw)
    data, problem = decode_transfer(raw, encoding)
    problems.add(problem)
    return data


def _decoded_text(part: Message, problems: Problems, aside: SetAside | None, *, html: bool = False) -> str:
    """The text of a part: transfer encoding undone, charset decoded, format=flowed joined."""
    data = _part_bytes(part, problems, aside)
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


def _part_text(part: Message, problems: Problems, aside: SetAside | None) -> str:
    return normalise_body(_decoded_text(part, problems, aside))


def _embedded_message(
    part: Message,
    index: int,
    problems: Problems,
    subject_of: Callable[[Message], str],
    aside: SetAside | None,
) -> Attachment:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        data = _part_bytes(part, problems, aside)
        return Attachment(sanitize_filename(None, index), "message/rfc822", data)
    data = _message_bytes(inner, problems)
    if aside is not None:
        data = aside.restore(data)
    subject = subject_of(inner)
    name = subject.replace("/", "_").replace("\\", "_") + ".eml" if subject else f"message-{index}.eml"
    return Attachment(sanitize_filename(name, index), "message/rfc822", data)


class _VerbatimPolicy(Compat32):
    """Writes headers back as they were read: no refolding, no encoding, 8-bit bytes kept."""

    def fold(self, name: str, value: str) -> str:
        return f"{name}: " + self.linesep.join(str(value).splitlines()) + self.linesep

    def fold_binary(self, name: str, value: str) -> bytes:
        return self.fold(name, value).encode("utf-8", "surrogateescape")


_VERBATIM = _VerbatimPolicy()


def _message_bytes(msg: Message, problems: Problems) -> bytes:
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
