"""HTML bodies as readable plain text, and the charset an HTML document declares.

A quoted copy (a ``<blockquote>`` that mail programs write for a reply: ``type="cite"``, a ``cite``
attribute, or a class naming a quote such as Gmail's ``gmail_quote``) becomes lines starting with
``> ``, as a plain-text reply quotes, so that ``engine.mail.reply_text`` can tell it from the
person's own words. A ``<blockquote>`` used only to indent (Gmail's and Apple Mail's "Indent",
``border:none``; a bare ``<blockquote>``) stays unquoted text: when unsure, the words are the person's.

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
_TAG = re.compile(r"<[^<>]*>")  # linear: a tag never runs past the next "<"
# html.parser reads what follows an unclosed construct (a start tag without ">", a comment without
# "-->") by looking for its end up to the end of the document, once per construct: time quadratic
# in the rest (80 KB of "<a b='>'" took 17 s). A rest longer than this is read as text instead.
MAX_UNCLOSED_REST = 4096
_QUOTE_CLASS = re.compile(r"quote", re.IGNORECASE)


def _is_citation(attrs: list[tuple[str, str | None]]) -> bool:
    """Whether a ``<blockquote>`` holds a quoted copy of earlier mail, not an indented paragraph."""
    for name, value in attrs:
        if name == "cite" or (name == "type" and (value or "").strip().lower() == "cite"):
            return True
        if name == "class" and _QUOTE_CLASS.search(value or ""):
            return True
    return False


class _HtmlToText(HTMLParser):
    """Collects readable text: blocks become lines, list items get "- ", scripts and styles vanish."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._blockquotes: list[bool] = []  # open <blockquote>s: whether each is a quoted copy
        self._quote_depth = 0

    def _append(self, text: str) -> None:
        """Add text, starting each of its lines inside a quoted copy with one "> " per level."""
        if not self._quote_depth:
            self.chunks.append(text)
            return
        prefix = "> " * self._quote_depth
        at_line_start = not self.chunks or self.chunks[-1].endswith("\n")
        for piece in re.split(r"(?<=\n)", text):
            if piece:
                self.chunks.append(prefix + piece if at_line_start and piece != "\n" else piece)
                at_line_start = piece.endswith("\n")

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
            self._append("- ")
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        if tag == "pre":
            self._pre_depth += 1
        if tag == "blockquote":
            citation = _is_citation(attrs)
            self._blockquotes.append(citation)
            self._quote_depth += citation

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
        if tag == "blockquote" and self._blockquotes:
            self._quote_depth -= self._blockquotes.pop()

    @property
    def in_skipped_element(self) -> bool:
        """Whether the text read now is inside a script, style, head, title or template."""
        return self._skip_depth > 0

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self._append(data)
            return
        text = _WHITESPACE_RUN.sub(" ", data)
        last = self.chunks[-1][-1:] if self.chunks else "\n"
        if last in ("\n", " "):
            text = text.lstrip(" ")
        if text:
            self._append(text)


def html_to_text(html: str) -> tuple[str, str | None]:
    """Convert an HTML body to readable plain text; returns the text and a problem if the HTML was broken."""
    parser = _HtmlToText()
    problem = None
    try:
        parser.feed(html)  # linear: it stops at the first construct that does not end
        if len(parser.rawdata) > MAX_UNCLOSED_REST:
            problem = "HTML has a tag or comment that never ends; the rest was read with tags stripped"
            rest, parser.rawdata = parser.rawdata, ""
            if not parser.cdata_elem and not parser.in_skipped_element:
                parser.handle_data(unescape(_TAG.sub(" ", rest)))
        parser.close()
        text = "".join(parser.chunks)
    except Exception as exc:  # HTMLParser is lenient, but a defect must never stop the mail
        problem = f"HTML could not be parsed ({type(exc).__name__}), tags were stripped"
        text = unescape(_TAG.sub(" ", html))
    text = text.replace("\xa0", " ").replace("\xad", "")
    lines = [line.strip(" ") if not line.startswith("- ") else line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return normalise_body(text), problem


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_:.\-]+)", re.IGNORECASE)


def html_declared_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a <meta> tag near its top, if any."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None
