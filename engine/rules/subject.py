"""Reads the command in an email subject: tags like ``[CLOSE#12]``, mentions like ``Call 12``, summaries.

The structure lives in ``grammars/subject.lark``; the words come from the rule pack as a
:class:`Keywords` value. Each keyword set gets one compiled LALR parser, cached.

Decisions: a number is a positive whole number of at most 18 significant digits (``0`` is not a
number, so ``[CLOSE#0]`` is ordinary text; leading zeros are dropped). A mention's number must
end there: ``call 555-0100``, ``Call 12.5`` and ``Task 10:30`` are not mentions. Reply prefixes
count only at the very start. The first bracketed element wins, else the first mention.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError
from lark.lexer import PatternRE, TerminalDef

from engine.errors import MailgateError
from engine.resources import grammars_dir

GRAMMAR_FILE = "subject.lark"


class Intent(StrEnum):
    """What a subject asks for."""

    UNRECOGNISED = "unrecognised"
    UPDATE_CALL = "update_call"
    UPDATE_REQUEST = "update_request"
    UPDATE_TASK = "update_task"
    CLOSE_CALL = "close_call"
    APPROVE_TASK = "approve_task"
    REJECT_TASK = "reject_task"
    MY_CALLS = "my_calls"
    MY_REQUESTS = "my_requests"
    MY_TASKS = "my_tasks"
    MY_APPROVALS = "my_approvals"


class KeywordError(MailgateError, ValueError):
    """A keyword set was refused; ``slot`` names the Keywords field at fault (None if no single one)."""

    def __init__(self, slot: str | None, message: str) -> None:
        self.slot = slot
        super().__init__(f"subject keyword slot '{slot}': {message}" if slot else message)


_STRUCTURE_CHARACTERS = "[]#"


@dataclass(frozen=True)
class Keywords:
    """Every keyword list the grammar needs; one field per keyword slot, each a tuple of aliases.

    Keywords match case-insensitively; a space inside a keyword matches any run of whitespace.
    A keyword must be printable text without ``[``, ``]``, ``#`` or line breaks (those are the
    grammar's structure); a reply prefix is written without its ``:``.
    """

    close_call: tuple[str, ...] = ("CLOSE",)
    approve_task: tuple[str, ...] = ("APPROVE",)
    reject_task: tuple[str, ...] = ("REJECT",)
    my_calls: tuple[str, ...] = ("MyCalls",)
    my_requests: tuple[str, ...] = ("MyRequests",)
    my_tasks: tuple[str, ...] = ("MyTasks",)
    my_approvals: tuple[str, ...] = ("MyApprovals",)
    call_tag: tuple[str, ...] = ("CALL",)  # [CALL#n]
    request_tag: tuple[str, ...] = ("REQ",)  # [REQ#n]
    task_tag: tuple[str, ...] = ("TASK", "APPROVAL")  # [TASK#n]
    call_word: tuple[str, ...] = ("Call", "Call No", "Call No.")  # Call n
    request_word: tuple[str, ...] = ("Request",)  # Request n
    task_word: tuple[str, ...] = ("Task", "Approval", "Task/Approval")  # Task n
    reply_prefix: tuple[str, ...] = ("Re", "Fwd", "Fw", "AW", "WG", "SV", "VS", "TR")  # Re:

    def __post_init__(self) -> None:
        for slot in keyword_slots():
            object.__setattr__(self, slot, _checked_aliases(slot, getattr(self, slot)))


def _checked_aliases(slot: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise KeywordError(slot, f"must be a list of keywords, got {value!r}")
    aliases = tuple(value)
    if not aliases:
        raise KeywordError(slot, "needs at least one keyword")
    for keyword in aliases:
        problem = _keyword_problem(slot, keyword)
        if problem:
            raise KeywordError(slot, f"keyword {keyword!r} {problem}")
    return aliases


def _keyword_problem(slot: str, keyword: object) -> str | None:
    if not isinstance(keyword, str):
        return "is not text"
    if not keyword.strip():
        return "is empty"
    if not keyword.isprintable():
        return "contains a line break, tab or other control character"
    for character in _STRUCTURE_CHARACTERS:
        if character in keyword:
            return f"contains {character!r}, which the subject grammar uses for structure"
    if slot == "reply_prefix" and ":" in keyword:
        return "contains ':'; write the prefix without it (the grammar adds the ':')"
    return None


def keyword_slots() -> tuple[str, ...]:
    """Field names of :class:`Keywords`, for the rule-pack validator."""
    return tuple(field.name for field in fields(Keywords))


DEFAULT_KEYWORDS = Keywords()


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


# ---- tree to values ----------------------------------------------------------------------------

_TRAILING_NUMBER = re.compile(r"([0-9]+)\s*\]?$")


def _numbered(intent: Intent, token: Token, bracketed: bool) -> SubjectElement:
    found = _TRAILING_NUMBER.search(token)
    # The grammar guarantees the number; stripping zeros keeps int() within its digit limit.
    number = int(found.group(1).lstrip("0")) if found else None
    return SubjectElement(intent, number, bracketed, str(token), _start(token))


def _summary(intent: Intent, token: Token) -> SubjectElement:
    return SubjectElement(intent, None, True, str(token), _start(token))


def _start(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


@v_args(inline=True)
class _SubjectTransformer(Transformer[Token, ParsedSubject]):
    """Turns each grammar rule into a value; ``start`` returns the :class:`ParsedSubject`."""

    def start(self, *children: str | SubjectElement) -> ParsedSubject:
        """Split prefixes from elements and decide the winner."""
        prefixes = tuple(c for c in children if isinstance(c, str))
        elements = tuple(c for c in children if isinstance(c, SubjectElement))
        return _decide(prefixes, elements)

    def prefix(self, token: Token) -> str:
        """A reply/forward prefix such as ``AW:`` or ``Re[2]:``, as written."""
        return str(token)

    def close_call(self, token: Token) -> SubjectElement:
        """``[CLOSE#n]``."""
        return _numbered(Intent.CLOSE_CALL, token, bracketed=True)

    def approve_task(self, token: Token) -> SubjectElement:
        """``[APPROVE#n]``."""
        return _numbered(Intent.APPROVE_TASK, token, bracketed=True)

    def reject_task(self, token: Token) -> SubjectElement:
        """``[REJECT#n]``."""
        return _numbered(Intent.REJECT_TASK, token, bracketed=True)

    def call_tag(self, token: Token) -> SubjectElement:
        """``[CALL#n]``."""
        return _numbered(Intent.UPDATE_CALL, token, bracketed=True)

    def request_tag(self, token: Token) -> SubjectElement:
        """``[REQ#n]``."""
        return _numbered(Intent.UPDATE_REQUEST, token, bracketed=True)

    def task_tag(self, token: Token) -> SubjectElement:
        """``[TASK#n]`` / ``[APPROVAL#n]``."""
        return _numbered(Intent.UPDATE_TASK, token, bracketed=True)

    def my_calls(self, token: Token) -> SubjectElement:
        """``[MyCalls]``."""
        return _summary(Intent.MY_CALLS, token)

    def my_requests(self, token: Token) -> SubjectElement:
        """``[MyRequests]``."""
        return _summary(Intent.MY_REQUESTS, token)

    def my_tasks(self, token: Token) -> SubjectElement:
        """``[MyTasks]``."""
        return _summary(Intent.MY_TASKS, token)

    def my_approvals(self, token: Token) -> SubjectElement:
        """``[MyApprovals]``."""
        return _summary(Intent.MY_APPROVALS, token)

    def call_mention(self, token: Token) -> SubjectElement:
        """``Call n`` / ``Call No. n``."""
        return _numbered(Intent.UPDATE_CALL, token, bracketed=False)

    def request_mention(self, token: Token) -> SubjectElement:
        """``Request n``."""
        return _numbered(Intent.UPDATE_REQUEST, token, bracketed=False)

    def task_mention(self, token: Token) -> SubjectElement:
        """``Task n`` / ``Approval n`` / ``Task/Approval n``."""
        return _numbered(Intent.UPDATE_TASK, token, bracketed=False)


# ---- building a parser for a keyword set ---------------------------------------------------------

# Slots whose keywords fill the same structure: one keyword in two of them would be ambiguous.
_SHARED_SHAPES: dict[str, tuple[str, ...]] = {
    "[KEYWORD#n]": ("close_call", "approve_task", "reject_task", "call_tag", "request_tag", "task_tag"),
    "[KEYWORD]": ("my_calls", "my_requests", "my_tasks", "my_approvals"),
    "KEYWORD n": ("call_word", "request_word", "task_word"),
}
_PLACEHOLDER = re.compile(r"%[A-Za-z_]+%")


def _sentinel(slot: str) -> str:
    """The placeholder text for ``slot`` as it appears inside a compiled terminal pattern."""
    return re.escape(f"%{slot}%")


def _keyword_regex(keyword: str) -> str:
    return r"\s+".join(re.escape(part) for part in keyword.split())


def _alternation(aliases: tuple[str, ...]) -> str:
    """``(?i:longest|...|shortest)``: longest first so ``Call No.`` wins over ``Call``."""
    patterns = sorted({_keyword_regex(k) for k in aliases}, key=lambda p: (-len(p), p))
    return "(?i:" + "|".join(patterns) + ")"


def _check_collisions(keywords: Keywords) -> None:
    for shape, slots in _SHARED_SHAPES.items():
        owner: dict[str, str] = {}
        for slot in slots:
            for keyword in getattr(keywords, slot):
                normalised = " ".join(keyword.split()).casefold()
                other = owner.setdefault(normalised, slot)
                if other != slot:
                    raise KeywordError(
                        slot, f"keyword {keyword!r} is also in '{other}'; '{shape}' would be ambiguous"
                    )


@functools.cache
def _grammar_text() -> str:
    return (grammars_dir() / GRAMMAR_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=32)
def _parser_for(keywords: Keywords) -> Lark:
    _check_collisions(keywords)
    replacements = {_sentinel(slot): _alternation(getattr(keywords, slot)) for slot in keyword_slots()}
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
        slots = sorted(s for s in keyword_slots() if _sentinel(s) in unused)
        raise KeywordError(slots[0], f"{GRAMMAR_FILE} has no placeholder for this slot")
    return parser


def compile_keywords(keywords: Keywords) -> None:
    """Build (and cache) the parser for ``keywords``; raise :class:`KeywordError` naming the slot."""
    _parser_for(keywords)


def parse_subject(subject: str, keywords: Keywords = DEFAULT_KEYWORDS) -> ParsedSubject:
    """Read the command in ``subject``; never raises on any subject (unreadable means unrecognised)."""
    if not subject:
        return _UNRECOGNISED
    parser = _parser_for(keywords)
    try:
        result = parser.parse(subject)
    except LarkError:
        return _UNRECOGNISED
    return result if isinstance(result, ParsedSubject) else _UNRECOGNISED
