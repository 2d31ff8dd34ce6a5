"""Bounds on header fields, so that reading any header of any message takes time linear in its size.

Python's structured header parser takes time quadratic in a field's length for some inputs (a
100 KB From of double quotes: over 100 s), and so does compat32's parameter parser
(``Message.get_param``) in the number of ``;`` of a Content-Type. Neither can be interrupted while
a C-level regular expression runs. So every field is measured before any parser reads it:

- ``check_header_block``: the top-level header block, scanned once as bytes, before parsing;
- ``check_part_headers``: the fields of every MIME part as compat32 parsed them (it keeps them raw,
  unread), before any value is read;
- ``address_elements``: an address header cut into its addresses by a linear scanner, so that the
  standard parser only ever reads one address of at most ``MAX_ADDRESS_CHARS``;
- ``ledger_key``: the key a message is recorded under, never longer than ``MAX_KEY_BYTES``, so that
  it fits any database index.

A message over a bound raises ``MailError`` with a reason naming the header (it is quarantined).
The limits, and why they are generous for real mail: docs/architecture.md, "Bounds".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from email.message import Message

from engine.errors import MailError
from engine.mail.parts import MAX_MIME_DEPTH

MAX_FIELD_BYTES = 64 * 1024  # one header field, its name and folded lines included
MAX_ADDRESS_LIST_BYTES = 128 * 1024  # To, Cc, Bcc, Reply-To and their Resent- forms
MAX_FIELDS = 2_000  # header fields in one header block (the message's or a MIME part's)
MAX_FIELDS_OF_ONE_NAME = 500  # e.g. Received (MTAs give up at 100 hops)
MAX_ADDRESSES = 2_000  # addresses in one address header
MAX_ADDRESS_CHARS = 512  # one address with its display name and comments
MAX_PARAMETERS = 100  # ';' in a Content-Type or Content-Disposition field
MAX_KEY_BYTES = 255  # a ledger key (a Message-ID): longer ones are replaced by their digest
MAX_MIME_PARTS = 1_000  # MIME parts in one message, itself included (each may become a stored attachment)

_ADDRESS_LISTS = frozenset(
    {"to", "cc", "bcc", "reply-to", "resent-to", "resent-cc", "resent-bcc", "resent-reply-to"}
)
_PARAMETER_FIELDS = frozenset({"content-type", "content-disposition"})
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_SHOWN_NAME_CHARS = 60


def field_limit(name: str) -> int:
    """The most bytes a header field of this (lower-case) name may have."""
    return MAX_ADDRESS_LIST_BYTES if name in _ADDRESS_LISTS else MAX_FIELD_BYTES


def _shown(name: str) -> str:
    name = name.strip()
    return name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "..."


def _check_fields(fields: Iterable[tuple[str, int, str | None]], where: str) -> None:
    """Raise MailError for the first field over its size, then for too many fields (of one name)."""
    counts: dict[str, int] = {}  # per lower-case name (a dict: a Counter costs twice the time here)
    written: dict[str, str] = {}
    for name, size, value in fields:
        lower = name.lower()
        if size > MAX_FIELD_BYTES and size > field_limit(lower):
            limit = field_limit(lower)
            raise MailError(f"{_shown(name)} header{where} of {size:,} bytes exceeds the limit of {limit:,}")
        if value is not None and lower in _PARAMETER_FIELDS and value.count(";") > MAX_PARAMETERS:
            raise MailError(
                f"{_shown(name)} header{where} has {value.count(';'):,} parameters, "
                f"over the limit of {MAX_PARAMETERS}"
            )
        count = counts.get(lower)
        if count is None:
            counts[lower] = 1
            written[lower] = name
        else:
            counts[lower] = count + 1
    total = sum(counts.values())
    if total <= MAX_FIELDS_OF_ONE_NAME:  # as in nearly every mail: neither limit below can be reached
        return
    common = max(counts, key=counts.__getitem__)
    if counts[common] > MAX_FIELDS_OF_ONE_NAME:
        raise MailError(
            f"{counts[common]:,} {_shown(written[common])} header fields{where} exceed the limit of "
            f"{MAX_FIELDS_OF_ONE_NAME:,} of one name"
        )
    if total > MAX_FIELDS:
        raise MailError(
            f"{total:,} header fields{where} exceed the limit of {MAX_FIELDS:,} "
            f"(most of them {_shown(written[common])})"
        )


def _block_fields(data: bytes, scanned: int, block_end: int) -> Iterator[tuple[str, int, str | None]]:
    starts = [(m.start(), m.group(1)) for m in _FIELD_NAME.finditer(data, 0, scanned)]
    for index, (start, name) in enumerate(starts):
        if index + 1 < len(starts):
            end = starts[index + 1][0]
        else:  # the last field scanned may go on past the scan: its true size, by one search
            following = _FIELD_NAME.search(data, scanned, block_end) if scanned < block_end else None
            end = following.start() if following is not None else block_end
        yield name.decode("ascii", "replace"), end - start, None


def check_header_block(data: bytes, block_end: int, scan_bytes: int) -> None:
    """Refuse a message whose top-level header block ``data[:block_end]`` has a field over its bounds.

    One linear scan of at most ``scan_bytes`` (a block larger than that is refused anyway; this
    names the header that made it so). A line that does not start a field (a folded line, a stray
    line) counts towards the field before it.
    """
    _check_fields(_block_fields(data, min(block_end, scan_bytes), block_end), "")


def _walk_parts(msg: Message) -> Iterator[tuple[int, Message]]:
    """Every part compat32 parsed, the message itself first (numbered 0), as deep as parts are read."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    number = 0
    while stack:
        part, depth = stack.pop()
        yield number, part
        number += 1
        payload = part.get_payload() if depth < MAX_MIME_DEPTH else None
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))


def check_part_headers(msg: Message) -> None:
    """Refuse a parsed message whose header fields, or any MIME part's, are over their bounds.

    Runs after compat32 parsed the message and before any field value is interpreted.
    """
    for number, part in _walk_parts(msg):
        if number >= MAX_MIME_PARTS:  # 100,000 empty parts are 10 MB of mail and 100,000 rows
            raise MailError(f"more than {MAX_MIME_PARTS:,} MIME parts exceed the limit of {MAX_MIME_PARTS:,}")
        where = f" of MIME part {number}" if number else ""
        fields = (
            (str(name), len(str(name)) + 2 + len(str(value)), str(value)) for name, value in part.raw_items()
        )
        _check_fields(fields, where)


_QUOTED = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_ANGLED = re.compile(r"<[^>]*(?:>|\Z)")
_PLAIN = re.compile(r'[^"<\\(),;:]+')
_IN_COMMENT = re.compile(r"[^()\\]+|\\.?|[()]", re.DOTALL)


def address_elements(name: str, value: str) -> list[str]:
    """The addresses of an address header's (unfolded) value, each as written; linear in its length.

    Splits at the commas, and the colon and semicolon of groups, that stand outside quoted strings,
    comments and angle brackets; a group's name is dropped. Raises MailError naming the header when
    an address is longer than ``MAX_ADDRESS_CHARS`` or there are more than ``MAX_ADDRESSES``.
    """
    elements: list[str] = []
    start = pos = depth = 0
    end = len(value)
    while pos < end:
        if depth:
            token = _IN_COMMENT.match(value, pos)
            assert token is not None  # the pattern matches any character
            depth += {"(": 1, ")": -1}.get(token.group(), 0)
            pos = token.end()
            continue
        char = value[pos]
        if char in ",;:":
            if char != ":":
                elements.append(value[start:pos])
            start = pos = pos + 1
        elif char == "(":
            depth, pos = 1, pos + 1
        elif char == "\\":
            pos += 2
        else:
            pattern = _QUOTED if char == '"' else _ANGLED if char == "<" else _PLAIN
            token = pattern.match(value, pos)
            pos = token.end() if token is not None else pos + 1
    elements.append(value[start:])
    found = [element.strip() for element in elements if element.strip()]
    if len(found) > MAX_ADDRESSES:
        raise MailError(f"{name} header names {len(found):,} addresses, over the limit of {MAX_ADDRESSES:,}")
    for element in found:
        if len(element) > MAX_ADDRESS_CHARS:
            raise MailError(
                f"{name} header has an address of {len(element):,} characters, "
                f"over the limit of {MAX_ADDRESS_CHARS}"
            )
    return found


def ledger_key(message_id: str | None, raw_sha256: str) -> str:
    """The key a message is recorded under: its Message-ID, or a digest when it has none or a long one.

    A Message-ID longer than ``MAX_KEY_BYTES`` (UTF-8) is keyed by its own digest, so that the same
    message is still recognised when it comes again, and the key fits any database index.
    """
    if not message_id:
        return f"sha256:{raw_sha256}"
    encoded = message_id.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_KEY_BYTES:
        return message_id
    return f"message-id-sha256:{hashlib.sha256(encoded).hexdigest()}"
