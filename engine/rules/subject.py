"""Reads the command in an email subject: tags like ``[CLOSE#12]``, mentions like ``Call 12``, summaries.

The structure lives in ``grammars/subject.lark``; what each command means lives in the table of
elements (``engine.rules.vocabulary.ELEMENTS``); the words come from the rule pack as a
:class:`Keywords` value. Each keyword set gets one compiled LALR parser, cached (and kept between
processes by ``engine.config.kept``).

Decisions: a number is a positive whole number no larger than ``MAX_ITEM_NUMBER`` (``0`` is not a
number, so ``[CLOSE#0]`` is ordinary text, and neither is ``Call 4155550123``, which no item can
have; leading zeros are dropped). A mention's number must
end there: ``call 555-0100``, ``Call 12.5`` and ``Task 10:30`` are not mentions. Reply prefixes
count only at the very start. The first bracketed element wins, else the first mention.
"""

from __future__ import annotations

import functools
import io
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lark import Lark, Token, Transformer
from lark import __version__ as lark_version
from lark.exceptions import LarkError
from lark.lexer import PatternRE, TerminalDef

from engine.config import kept
from engine.resources import grammars_dir
from engine.rules.vocabulary import (
    ELEMENTS,
    REPLY_PREFIX_SLOT,
    Element,
    Intent,
    KeywordError,
    Keywords,
    Shape,
    default_keywords,
    keyword_slots,
)

__all__ = [
    "Intent",
    "KeywordError",
    "Keywords",
    "ParsedSubject",
    "SubjectElement",
    "compile_keywords",
    "default_keywords",
    "keyword_slots",
    "parse_subject",
]

GRAMMAR_FILE = "subject.lark"


@dataclass(frozen=True)
class SubjectElement:
    """One recognised tag or mention; ``start`` is its 0-based character offset in the subject."""

    intent: Intent
    number: int | None
    bracketed: bool
    text: str
    start: int


@dataclass(frozen=True)
class ParsedSubject:
    """What a subject asks for: the winning element's intent and number, plus everything seen."""

    intent: Intent
    number: int | None
    bracketed: bool
    matched: str | None  # text of the winning element
    prefixes: tuple[str, ...]  # reply/forward prefixes seen at the start, as written
    elements: tuple[SubjectElement, ...]


_UNRECOGNISED = ParsedSubject(Intent.UNRECOGNISED, None, False, None, (), ())


def _decide(prefixes: tuple[str, ...], elements: tuple[SubjectElement, ...]) -> ParsedSubject:
    """Pick the winner: the first bracketed element if any, else the first plain mention."""
    winner = next((e for e in elements if e.bracketed), None) or next(iter(elements), None)
    if winner is None:
        return ParsedSubject(Intent.UNRECOGNISED, None, False, None, prefixes, elements)
    return ParsedSubject(winner.intent, winner.number, winner.bracketed, winner.text, prefixes, elements)


# ---- tokens to values ---------------------------------------------------------------------------

_TRAILING_NUMBER = re.compile(r"([0-9]+)\s*\]?$")
# the largest number an item can have: the number columns are 32-bit INTEGERs on PostgreSQL, where
# a larger one in a query or a row fails the message's transaction ("integer out of range")
MAX_ITEM_NUMBER = 2**31 - 1
_PREFIX_TERMINAL = REPLY_PREFIX_SLOT.upper()
_ELEMENT_OF_TERMINAL: Mapping[str, Element] = {element.terminal: element for element in ELEMENTS}


def _element(token: Token) -> SubjectElement | None:
    """The command ``token`` matched, read through its row in the table of elements (None: text)."""
    element = _ELEMENT_OF_TERMINAL[token.type]
    number = None
    if element.shape is not Shape.SUMMARY_TAG:
        found = _TRAILING_NUMBER.search(token)
        # The grammar guarantees the number; stripping zeros keeps int() within its digit limit.
        number = int(found.group(1).lstrip("0")) if found else None
        if number is not None and number > MAX_ITEM_NUMBER:
            return None
    bracketed = element.shape is not Shape.MENTION
    return SubjectElement(element.intent, number, bracketed, str(token), token.start_pos or 0)


class _SubjectTransformer(Transformer[Token, ParsedSubject]):
    """Turns the tokens of ``start`` (prefixes, then commands) into the :class:`ParsedSubject`."""

    def start(self, tokens: list[Token]) -> ParsedSubject:
        """Split prefixes from commands and decide the winner."""
        prefixes = tuple(str(t) for t in tokens if t.type == _PREFIX_TERMINAL)
        read = (_element(t) for t in tokens if t.type != _PREFIX_TERMINAL)
        elements = tuple(element for element in read if element is not None)
        return _decide(prefixes, elements)


# ---- building a parser for a keyword set ---------------------------------------------------------

_PLACEHOLDER = re.compile(r"%[A-Za-z_]+%")
# A placeholder that is no slot: the words of every "KEYWORD n" slot, for the lookahead of _TEXT.
_MENTION_KEYWORDS = "mention_keywords"


def _sentinel(name: str) -> str:
    """The placeholder text for ``name`` as it appears inside a compiled terminal pattern."""
    return re.escape(f"%{name}%")


def _keyword_regex(keyword: str) -> str:
    return r"\s+".join(re.escape(part) for part in keyword.split())


def _alternation(aliases: tuple[str, ...]) -> str:
    """``(?i:longest|...|shortest)``: longest first so ``Call No.`` wins over ``Call``."""
    patterns = sorted({_keyword_regex(k) for k in aliases}, key=lambda p: (-len(p), p))
    return "(?i:" + "|".join(patterns) + ")"


def _fillings(keywords: Keywords) -> dict[str, str]:
    """Sentinel -> regex alternation, for every slot and for ``%mention_keywords%``."""
    fillings = {_sentinel(slot): _alternation(aliases) for slot, aliases in keywords.items()}
    mentions = tuple(word for e in ELEMENTS if e.shape is Shape.MENTION for word in keywords[e.slot])
    fillings[_sentinel(_MENTION_KEYWORDS)] = _alternation(mentions)
    return fillings


def _check_terminals(parser: Lark) -> None:
    """The grammar's command terminals must be exactly the table's: a token no row reads is a bug."""
    kept = {t.name for t in parser.terminals if not t.name.startswith("_")} - set(parser.ignore_tokens)
    expected = {*_ELEMENT_OF_TERMINAL, _PREFIX_TERMINAL}
    if kept != expected:
        missing, extra = sorted(expected - kept), sorted(kept - expected)
        raise KeywordError(
            None, f"{GRAMMAR_FILE} and the table of elements disagree: missing {missing}, unknown {extra}"
        )


@functools.cache
def _grammar_text() -> str:
    return (grammars_dir() / GRAMMAR_FILE).read_text(encoding="utf-8")


# the kind of a kept parser; its entry is plain data (Lark.save's), read back with Lark's own loader
SUBJECT_PARSER = "subject-parser"


@functools.lru_cache(maxsize=32)
def _parser_for(keywords: Keywords) -> Lark:
    replacements = _fillings(keywords)
    # everything the parser is made of: Lark, the grammar, the words, the table it is checked against
    sources = (lark_version, _grammar_text(), repr(sorted(replacements.items())), repr(ELEMENTS))
    found, data = kept.read_entry(SUBJECT_PARSER, sources)
    if found:
        try:
            return Lark.__new__(Lark)._load(data, transformer=_SubjectTransformer())  # as Lark's cache=
        except Exception:  # an entry of another Lark: build it afresh
            pass
    parser = _build_parser(replacements)
    buffer = io.BytesIO()
    try:
        parser.save(buffer, exclude_options=_NOT_SAVED)
        saved = pickle.loads(buffer.getvalue())
    except Exception:  # a Lark that cannot save it: the next process builds it again
        return parser
    kept.write_entry(SUBJECT_PARSER, sources, saved)
    return parser


# the options Lark.save cannot keep (callables); the transformer is given again when loading
_NOT_SAVED = ("transformer", "postlex", "lexer_callbacks", "edit_terminals", "_plugins")


def _build_parser(replacements: dict[str, str]) -> Lark:
    """The parser of the grammar with each placeholder filled, checked against the table of elements."""
    unused = set(replacements)

    def keyword_alternation(placeholder: re.Match[str]) -> str:
        sentinel = placeholder.group()
        if sentinel not in replacements:
            raise KeywordError(None, f"{GRAMMAR_FILE}: placeholder {sentinel} is not a keyword slot")
        unused.discard(sentinel)
        return replacements[sentinel]

    def fill_keywords(terminal: TerminalDef) -> None:
        # One pass, so a keyword that happens to look like a placeholder is never substituted again.
        regexp = _PLACEHOLDER.sub(keyword_alternation, terminal.pattern.to_regexp())
        terminal.pattern = PatternRE(regexp)

    try:
        parser = Lark(
            _grammar_text(),
            parser="lalr",
            lexer="contextual",
            transformer=_SubjectTransformer(),
            edit_terminals=fill_keywords,
        )
    except (LarkError, re.error) as error:
        raise KeywordError(None, f"the subject keywords cannot compile: {error}") from error
    if unused:
        slots = sorted(s for s in keyword_slots() if _sentinel(s) in unused) or [_MENTION_KEYWORDS]
        raise KeywordError(slots[0], f"{GRAMMAR_FILE} has no placeholder for this slot")
    _check_terminals(parser)
    return parser


def compile_keywords(keywords: Keywords) -> None:
    """Build (and cache) the parser for ``keywords``; :class:`KeywordError` if the grammar refuses them."""
    _parser_for(keywords)


def parse_subject(subject: str, keywords: Keywords | None = None) -> ParsedSubject:
    """Read the command in ``subject`` (with the bundled default keywords if none are given).

    Never raises on any subject: unreadable means unrecognised.
    """
    if not subject:
        return _UNRECOGNISED
    parser = _parser_for(keywords if keywords is not None else default_keywords())
    try:
        result = parser.parse(subject)
    except LarkError:
        return _UNRECOGNISED
    return result if isinstance(result, ParsedSubject) else _UNRECOGNISED
