"""HTML bodies as readable plain text, and the charset an HTML document declares.

Total, like ``engine.mail.text``: broken HTML is converted as well as possible and the defect is
returned as a human-readable problem string instead of raising.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from engine.mail.text import normalise_body

_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre", "dl", "hr"}
)
_LINE_TAGS = frozenset(
    {
        "div", "li", "tr", "section", "article", "header", "footer", "address", "form", "dt", "dd",
        "fieldset", "figure", "figcaption", "nav", "main", "aside", "center", "caption", "details",
        "summary", "body", "html",
    }
)  # fmt: skip
_WHITESPACE_RUN = re.compile(r"[ \t\n\r\f\v]+")


class _HtmlToText(HTMLParser):
    """Collects readable text: blocks become lines, list items get "- ", scripts and styles vanish."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0

    def _ends_with_newlines(self, count: int) -> bool:
        tail = "".join(self.chunks[-count:])[-count:] if self.chunks else "\n" * count
        return tail == "\n" * count

    def _break(self, count: int) -> None:
        if not self.chunks:
            return
        while not self._ends_with_newlines(count):
            self.chunks.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag == "body":
            self._skip_depth = 0
        if tag == "br":
            self.chunks.append("\n")
        elif tag == "li":
            self._break(1)
            self.chunks.append("- ")
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        if tag == "pre":
            self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self.chunks.append(data)
            return
        text = _WHITESPACE_RUN.sub(" ", data)
        last = self.chunks[-1][-1:] if self.chunks else "\n"
        if last in ("\n", " "):
            text = text.lstrip(" ")
        if text:
            self.chunks.append(text)


def html_to_text(html: str) -> tuple[str, str | None]:
    """Convert an HTML body to readable plain text; returns the text and a problem if the HTML was broken."""
    parser = _HtmlToText()
    problem = None
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.chunks)
    except Exception as exc:  # HTMLParser is lenient, but a defect must never stop the mail
        problem = f"HTML could not be parsed ({type(exc).__name__}), tags were stripped"
        text = unescape(re.sub(r"<[^>]*>", " ", html))
    text = text.replace("\xa0", " ").replace("\xad", "")
    lines = [line.strip(" ") if not line.startswith("- ") else line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return normalise_body(text), problem


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_:.\-]+)", re.IGNORECASE)


def html_declared_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a <meta> tag near its top, if any."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None
