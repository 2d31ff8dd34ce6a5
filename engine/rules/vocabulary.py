"""The subject vocabulary: the table of elements, and the keyword sets a rule pack gives them.

An element is one kind of command a subject can carry. Its row in :data:`ELEMENTS` is all the
code knows about it: its keyword slot (which also names its terminal in ``grammars/subject.lark``,
upper-cased), its shape and the intent it asks for. The words themselves live only in rule packs;
code that has no pack takes them from the bundled pack ``rules/default.yaml``
(:func:`default_keywords`). docs/rule-packs.md ("Adding a subject command") lists what a new
command touches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.config.yaml_source import Problems, is_mapping, is_sequence, load_pack_yaml_file
from engine.errors import MailgateError, did_you_mean
from engine.resources import rules_dir

DEFAULT_PACK = "default"


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


class Shape(StrEnum):
    """How an element is written; the value is how messages show it."""

    NUMBERED_TAG = "[KEYWORD#n]"
    SUMMARY_TAG = "[KEYWORD]"
    MENTION = "KEYWORD n"


@dataclass(frozen=True)
class Element:
    """One kind of command: its keyword slot, its shape and the intent it asks for."""

    slot: str
    shape: Shape
    intent: Intent

    @property
    def terminal(self) -> str:
        """The grammar terminal that matches it: the slot's name upper-cased."""
        return self.slot.upper()


# The table of elements. Slots of one shape may not share a keyword (see Keywords).
ELEMENTS: tuple[Element, ...] = (
    Element("close_call", Shape.NUMBERED_TAG, Intent.CLOSE_CALL),
    Element("approve_task", Shape.NUMBERED_TAG, Intent.APPROVE_TASK),
    Element("reject_task", Shape.NUMBERED_TAG, Intent.REJECT_TASK),
    Element("my_calls", Shape.SUMMARY_TAG, Intent.MY_CALLS),
    Element("my_requests", Shape.SUMMARY_TAG, Intent.MY_REQUESTS),
    Element("my_tasks", Shape.SUMMARY_TAG, Intent.MY_TASKS),
    Element("my_approvals", Shape.SUMMARY_TAG, Intent.MY_APPROVALS),
    Element("call_tag", Shape.NUMBERED_TAG, Intent.UPDATE_CALL),
    Element("request_tag", Shape.NUMBERED_TAG, Intent.UPDATE_REQUEST),
    Element("task_tag", Shape.NUMBERED_TAG, Intent.UPDATE_TASK),
    Element("call_word", Shape.MENTION, Intent.UPDATE_CALL),
    Element("request_word", Shape.MENTION, Intent.UPDATE_REQUEST),
    Element("task_word", Shape.MENTION, Intent.UPDATE_TASK),
)

# Not an element: the words of the reply/forward prefixes (Re:, AW:) read before the commands.
REPLY_PREFIX_SLOT = "reply_prefix"
_SLOTS = (*(element.slot for element in ELEMENTS), REPLY_PREFIX_SLOT)


def keyword_slots() -> tuple[str, ...]:
    """Every keyword slot, in the table's order, the reply prefix last."""
    return _SLOTS


class KeywordError(MailgateError, ValueError):
    """A keyword set was refused; ``slot`` names the slot at fault (None if no single one)."""

    def __init__(self, slot: str | None, message: str) -> None:
        self.slot = slot
        super().__init__(f"subject keyword slot '{slot}': {message}" if slot else message)


_STRUCTURE_CHARACTERS = "[]#"


def check_keyword(slot: str, keyword: object) -> None:
    """Raise :class:`KeywordError` if ``keyword`` cannot be a word of ``slot``."""
    problem = _keyword_problem(slot, keyword)
    if problem:
        raise KeywordError(slot, f"keyword {keyword!r} {problem}")


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
    if slot == REPLY_PREFIX_SLOT and ":" in keyword:
        return "contains ':'; write the prefix without it (the grammar adds the ':')"
    return None


def _checked_aliases(slot: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise KeywordError(slot, f"must be a list of keywords, got {value!r}")
    aliases = tuple(value)
    if not aliases:
        raise KeywordError(slot, "needs at least one keyword")
    for keyword in aliases:
        check_keyword(slot, keyword)
    return aliases


def _check_collisions(aliases: Mapping[str, tuple[str, ...]]) -> None:
    """One keyword in two slots of the same shape would make that shape ambiguous."""
    for shape in Shape:
        owner: dict[str, str] = {}
        for element in ELEMENTS:
            if element.shape is not shape:
                continue
            for keyword in aliases[element.slot]:
                other = owner.setdefault(" ".join(keyword.split()).casefold(), element.slot)
                if other != element.slot:
                    raise KeywordError(
                        element.slot,
                        f"keyword {keyword!r} is also in '{other}'; '{shape.value}' would be ambiguous",
                    )


class Keywords(Mapping[str, tuple[str, ...]]):
    """The words of every keyword slot: a validated, hashable mapping ``slot -> aliases``.

    Contract: it holds exactly the slots of :func:`keyword_slots`, each a non-empty tuple of
    keywords that pass :func:`check_keyword`, and no keyword is in two slots of one shape;
    anything else raises :class:`KeywordError` naming the slot. Keywords match
    case-insensitively; a space inside a keyword matches any run of whitespace.
    """

    __slots__ = ("_aliases", "_hash")

    def __init__(self, aliases: Mapping[str, Iterable[str]]) -> None:
        for slot in aliases:
            if slot not in _SLOTS:
                raise KeywordError(slot, f"is not a keyword slot{did_you_mean(str(slot), _SLOTS)}")
        missing = [slot for slot in _SLOTS if slot not in aliases]
        if missing:
            raise KeywordError(missing[0], "has no keywords")
        checked = {slot: _checked_aliases(slot, aliases[slot]) for slot in _SLOTS}
        _check_collisions(checked)
        self._aliases = checked
        self._hash = hash(tuple(checked.items()))

    def replaced(self, **aliases: Iterable[str]) -> Keywords:
        """A copy with the given slots' words replaced (each slot's whole list)."""
        return Keywords({**self._aliases, **aliases})

    def __getitem__(self, slot: str) -> tuple[str, ...]:
        return self._aliases[slot]

    def __iter__(self) -> Iterator[str]:
        return iter(self._aliases)

    def __len__(self) -> int:
        return len(self._aliases)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Keywords):
            return self._hash == other._hash and self._aliases == other._aliases
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"Keywords({self._aliases!r})"

    def __reduce__(self) -> tuple[type[Keywords], tuple[dict[str, tuple[str, ...]]]]:
        # checked and hashed again where it is unpickled (the parse worker): str hashes differ there
        return (Keywords, (dict(self._aliases),))


def read_keywords(node: Any, parent_node: Any, base: Keywords | None, problems: Problems) -> Keywords | None:
    """The keywords a pack's ``keywords:`` node makes over ``base`` (every slot when ``base`` is None).

    Each mistake is added to ``problems`` at its line and column; then the result is None.
    """
    if node is None:
        if base is None:
            problems.at(parent_node, None, "the pack must list the words of every keyword slot")
        return base
    if not is_mapping(node):
        problems.at(parent_node, "keywords", "keywords must map a keyword slot to a list of words")
        return None
    changes: dict[str, tuple[str, ...]] = {}
    clean = True
    for slot, words in node.items():
        if slot not in _SLOTS:
            problems.at_key(node, slot, f"unknown keyword slot {slot!r}{did_you_mean(str(slot), _SLOTS)}")
            clean = False
            continue
        values = list(words) if is_sequence(words) else [words]
        if not values or not all(isinstance(w, str) and w.strip() for w in values):
            problems.at(node, slot, f"keywords.{slot} must be a non-empty list of words")
            clean = False
            continue
        aliases = tuple(w.strip() for w in values)
        for index, word in enumerate(aliases):
            try:
                check_keyword(slot, word)
            except KeywordError as exc:
                where = (words, index) if is_sequence(words) else (node, slot)
                problems.at(where[0], where[1], str(exc))
                clean = False
        changes[str(slot)] = aliases
    if not clean:
        return None
    try:
        return base.replaced(**changes) if base is not None else Keywords(changes)
    except KeywordError as exc:
        if exc.slot in node:
            problems.at(node, exc.slot, str(exc))
        else:
            problems.at(parent_node, "keywords", f"keywords: {exc}")
        return None


def default_pack_path() -> Path:
    """The bundled pack ``rules/default.yaml``, whose keywords are the defaults."""
    return rules_dir() / f"{DEFAULT_PACK}.yaml"


@functools.cache
def default_keywords() -> Keywords:
    """The keywords of the bundled pack ``rules/default.yaml``, read once: the only copy of the defaults."""
    path = default_pack_path()
    return keywords_of_default_pack(load_pack_yaml_file(path), path)


def keywords_of_default_pack(data: Any, path: Path) -> Keywords:
    """The default keywords, from the bundled default pack already parsed (``data``, read from ``path``)."""
    problems = Problems(str(path))
    keywords = None
    if is_mapping(data):
        keywords = read_keywords(data.get("keywords"), data, None, problems)
    else:
        problems.at(data, None, "a rule pack must be a mapping")
    problems.raise_if_any()
    assert keywords is not None  # read_keywords reports a problem whenever it gives None
    return keywords
