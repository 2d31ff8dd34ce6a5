"""What IMAP commands and responses look like: mailbox names, UID sets, and reading FETCH and SEARCH.

Pure functions on aioimaplib's ``Response`` and on strings; no connection here (``session.py``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from aioimaplib.aioimaplib import Response, quoted  # type: ignore[import-untyped]

_BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}$")
_UID_ITEM = re.compile(rb"\bUID (\d+)\b")
_SIZE_ITEM = re.compile(rb"\bRFC822\.SIZE (\d+)\b")


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3), e.g. ``Gelöscht`` -> ``Gel&APY-scht``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def mailbox_argument(name: str) -> str:
    """A mailbox name as a quoted IMAP command argument."""
    return str(quoted(imap_utf7(name)))


def response_text(response: Response) -> str:
    """The tagged reply's text (e.g. ``[AUTHENTICATIONFAILED] Authentication failed.``)."""
    if not response.lines:
        return str(response.result)
    last = response.lines[-1]
    return bytes(last).decode("utf-8", "replace").strip() or str(response.result)


def uid_set(uids: Iterable[int]) -> str:
    """An IMAP sequence set of UIDs, runs written as ranges: ``[1, 2, 3, 7]`` -> ``1:3,7``."""
    runs: list[list[int]] = []
    for uid in sorted(set(uids)):
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(f"{a}:{b}" if a != b else str(a) for a, b in runs)


def search_result(response: Response) -> set[int]:
    """The numbers of a SEARCH reply."""
    uids: set[int] = set()
    for line in response.lines[:-1]:
        uids.update(int(word) for word in bytes(line).split() if word.isdigit())
    return uids


def sizes_of(response: Response) -> dict[int, int]:
    """UID -> RFC822.SIZE from a ``UID FETCH ... (RFC822.SIZE)`` reply."""
    sizes: dict[int, int] = {}
    for line in response.lines[:-1]:
        if isinstance(line, bytes):
            uid, size = _UID_ITEM.search(line), _SIZE_ITEM.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def body_literals(response: Response, only: int | None = None) -> dict[int, bytes]:
    """UID -> the ``BODY[]`` literal, from a FETCH reply (unsolicited FETCHes skipped).

    A literal whose FETCH names no UID is kept only when ``only`` is given (a one-message fetch),
    as ``only``'s.
    """
    lines = response.lines
    found: dict[int, bytes] = {}
    for index, line in enumerate(lines[:-1]):
        if not isinstance(line, bytes):
            continue
        match = _BODY_LITERAL.search(line)
        literal = lines[index + 1]
        if not match or not isinstance(literal, bytearray) or len(literal) != int(match.group(1)):
            continue
        trailer = lines[index + 2] if index + 2 < len(lines) else b""
        uids = _UID_ITEM.findall(line) + _UID_ITEM.findall(bytes(trailer))
        uid = int(uids[0]) if uids else only
        if uid is not None and (only is None or uid == only) and uid not in found:
            found[uid] = bytes(literal)
    return found


def xoauth2_initial_response(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial client response, base64-encoded."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
