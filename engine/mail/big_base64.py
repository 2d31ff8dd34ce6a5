"""Big base64 bodies set aside before the MIME parser reads a message, decoded straight from the raw bytes.

The standard library's parser holds a message as text and as a list of its lines, and decoding a
part copies it again: about nine times a big attachment's size at its peak, and it reads a base64
body line by line (most of the time it spends on a mail with a 100 KB attachment). So, before a big
message is parsed, every run of base64 lines of at least ``SET_ASIDE_BYTES`` is replaced by one
token line (``MAILGATEBIG<nonce>N<index>``, in the base64 alphabet, so the parser keeps it as it
is); a part whose body is exactly one token is later decoded from a view of the original bytes
(``SetAside.decode_base64``), and any other text holding a token gets the original lines back
(``restore``), so what comes out is exactly what parsing the whole message would have given.

Contract: ``set_aside`` never changes a message under ``SET_ASIDE_BYTES``; ``restore`` and
``restore_text`` undo it for any text the parser produced; ``decode_base64`` returns None when the
part is not exactly one set-aside run or its base64 is broken (the caller then decodes the
restored text the usual way, with its repairs and problem notes).
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field

__all__ = ["SET_ASIDE_BYTES", "SetAside", "set_aside"]

SET_ASIDE_BYTES = 32 * 1024  # below this the standard parser is as quick; above, it reads line by line
_BASE64_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]++\r?\n){2,}+")
_TOKEN_PREFIX = b"MAILGATEBIG"
_NONCE_BYTES = 8
# any token of any message: each message's own are those in its spans (a mail may hold look-alikes)
_ANY_TOKEN = re.compile(re.escape(_TOKEN_PREFIX) + rb"[0-9a-f]{%d}N[0-9]+" % (2 * _NONCE_BYTES))


@dataclass(frozen=True)
class SetAside:
    """The original bytes and where each token's lines were in them."""

    data: bytes = field(repr=False)
    spans: dict[bytes, tuple[int, int]]
    _token: re.Pattern[bytes] = field(repr=False)

    def holds_token(self, payload: bytes) -> bool:
        """Whether a part's payload holds a set-aside run."""
        return bool(self.spans) and _TOKEN_PREFIX in payload and self._token.search(payload) is not None

    def decode_base64(self, payload: bytes) -> bytes | None:
        """The decoded run when ``payload`` is exactly one token, read from a view of the original."""
        span = self.spans.get(payload.strip())
        if span is None:
            return None
        start, end = span
        with memoryview(self.data) as view:
            try:
                return binascii.a2b_base64(view[start:end])
            except binascii.Error:
                return None

    def restore(self, payload: bytes) -> bytes:
        """``payload`` with every token replaced by the original lines it stands for."""
        if not self.holds_token(payload):
            return payload
        return self._token.sub(self._original, payload)

    def restore_text(self, text: str) -> str:
        """The same as ``restore`` for text the parser decoded (as ASCII with surrogate escapes)."""
        if not self.spans or _TOKEN_PREFIX.decode() not in text:
            return text
        encoded = text.encode("utf-8", "surrogateescape")
        return self.restore(encoded).decode("utf-8", "surrogateescape")

    def _original(self, match: re.Match[bytes]) -> bytes:
        """The original lines of a token found, or the text found if it is not one of this message's."""
        span = self.spans.get(match.group(0))
        if span is None:
            return match.group(0)
        start, end = span
        return self.data[start:end].rstrip(b"\r\n")


def set_aside(data: bytes) -> tuple[bytes, SetAside | None]:
    """``data`` with its big base64 runs replaced by tokens, and what undoes it (None if nothing was)."""
    if len(data) < SET_ASIDE_BYTES:
        return data, None
    nonce = secrets.token_hex(_NONCE_BYTES).encode()
    spans: dict[bytes, tuple[int, int]] = {}
    pieces: list[bytes] = []
    kept = 0
    for match in _BASE64_RUN.finditer(data):
        start, end = match.span()
        if end - start < SET_ASIDE_BYTES:
            continue
        token = _TOKEN_PREFIX + nonce + b"N" + str(len(spans)).encode()
        spans[token] = (start, end)
        line_end = b"\r\n" if data[end - 2 : end] == b"\r\n" else b"\n"
        pieces += (data[kept:start], token, line_end)
        kept = end
    if not spans:
        return data, None
    pieces.append(data[kept:])
    return b"".join(pieces), SetAside(data, spans, _ANY_TOKEN)  # compiled once, not per message
