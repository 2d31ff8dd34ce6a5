"""The standard library's MIME parser, without compiling a pattern for each multipart's boundary.

``email.feedparser`` compiles ``(?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>...)?$``
for every multipart part it meets, and a boundary is unique to its message, so Python's pattern
cache never helps: about a quarter of a millisecond a multipart mail, a twentieth of reading the
benchmark's mix. Here the parser's own generator runs with a ``re`` whose ``compile`` gives, for
exactly that pattern, an object that matches the separator as a prefix and the rest with one
pattern compiled once: the same matches, the same groups. Any other pattern, or one that is not
exactly the parser's, is compiled as usual. The library's module itself is left as it is.
"""

from __future__ import annotations

import re
import types
from email import feedparser, policy
from email.message import Message
from typing import Any

__all__ = ["parse_mime"]

_PREFIX = "(?P<sep>"
_SUFFIX = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_AFTER_SEPARATOR = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class _BoundaryPattern:
    """``re.compile(_PREFIX + re.escape(separator) + _SUFFIX)``'s ``match``, for the parser's use."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        """The match at the start of ``line``: the separator, then the pattern's rest after it."""
        if line.startswith(self.separator):
            return _AFTER_SEPARATOR.match(line, len(self.separator))
        return None


class _ReForTheParser:
    """The ``re`` module as the parser's generator sees it (see the module)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        """``re.compile``, but a boundary's pattern as a ``_BoundaryPattern``."""
        boundary = isinstance(pattern, str) and pattern.startswith(_PREFIX) and pattern.endswith(_SUFFIX)
        if boundary and flags == 0:
            escaped = pattern[len(_PREFIX) : -len(_SUFFIX)]
            separator = _ESCAPED.sub(r"\1", escaped)
            if re.escape(separator) == escaped:  # exactly the parser's pattern for this separator
                return _BoundaryPattern(separator)
        return re.compile(pattern, flags)


class _FeedParser(feedparser.FeedParser):
    """The library's parser, its generator run with ``_ReForTheParser`` as ``re``."""


_parsegen: Any = getattr(feedparser.FeedParser, "_parsegen", None)
if isinstance(_parsegen, types.FunctionType):  # else (another Python's parser) the library's, as it is
    _FeedParser._parsegen = types.FunctionType(  # type: ignore[attr-defined]
        _parsegen.__code__,
        {**_parsegen.__globals__, "re": _ReForTheParser()},
        _parsegen.__name__,
        _parsegen.__defaults__,
        _parsegen.__closure__,
    )


def parse_mime(data: bytes) -> Message:
    """``BytesParser(policy=policy.compat32).parsebytes(data)``, the same message."""
    parser = _FeedParser(policy=policy.compat32)
    parser.feed(data.decode("ASCII", errors="surrogateescape"))
    return parser.close()
