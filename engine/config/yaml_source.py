"""Reading YAML with ruamel.yaml so that every mapping and list keeps its line and column.

Validators walk the loaded tree and report mistakes through a ``Problems`` collector, which
turns a node (plus an optional key or index) back into ``file:line:col``. What is read keeps its
positions as ``Spans`` (Semgrep's ``YamlTree(value, span)``), so a later check that finds a
mistake in a value points at it without reading the file again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import __version__ as ruamel_version
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from engine.config import kept
from engine.config.yaml_bounds import too_deep, too_long_number
from engine.errors import ConfigError, Problem, Span

PACK_YAML = "pack-yaml"  # the kind of a kept pack tree
# the modules of the classes a parsed tree is made of: anything else in a kept tree makes it a miss
_TREE_MODULES = frozenset(
    f"ruamel.yaml.{name}"
    for name in (
        "anchor",
        "comments",
        "error",
        "scalarbool",
        "scalarfloat",
        "scalarint",
        "scalarstring",
        "tag",
        "timestamp",
        "tokens",
    )
)


def load_yaml_file(path: Path) -> Any:
    """Parse a YAML file, keeping positions; a syntax error becomes a ConfigError at its line."""
    return load_yaml_text(_read_text(path), str(path))


def load_pack_yaml_file(path: Path) -> Any:
    """``load_yaml_file`` for a rule pack: the same tree, kept (``engine.config.kept``) once parsed."""
    text = _read_text(path)
    sources = (ruamel_version, text)  # round trip, duplicate keys refused: as load_yaml_text
    found, tree = kept.read_entry(PACK_YAML, sources, _TREE_MODULES)
    if not found:
        tree = load_yaml_text(text, str(path))
        kept.write_entry(PACK_YAML, sources, tree)
    return tree


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), 1, 1, f"cannot read file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), 1, 1, f"not UTF-8 text: {exc.reason}")]) from None


def load_yaml_text(text: str, filename: str) -> Any:
    """Parse YAML text (see ``load_yaml_file``)."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem(filename, line, col, f"invalid YAML: {message}")]) from None
    except YAMLError as exc:
        raise ConfigError([Problem(filename, 1, 1, f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([too_deep(text, filename)]) from None
    except ValueError:  # e.g. an integer too long to convert (Python's int_max_str_digits)
        problem = too_long_number(text, filename)
        if problem is None:
            raise
        raise ConfigError([problem]) from None


def position(node: Any, key: Any = None) -> tuple[int, int]:
    """1-based (line, col) of a node, or of the value at ``key`` inside a mapping or list."""
    try:
        if key is not None and isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.value(key)
            return line + 1, col + 1
        if key is not None and isinstance(node, CommentedSeq) and isinstance(key, int):
            line, col = node.lc.item(key)
            return line + 1, col + 1
        if isinstance(node, CommentedMap | CommentedSeq):
            return node.lc.line + 1, node.lc.col + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    return 1, 1


def key_position(node: Any, key: Any) -> tuple[int, int]:
    """1-based (line, col) of a mapping's key itself (for 'unknown key' messages)."""
    try:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            return line + 1, col + 1
    except (AttributeError, KeyError, TypeError):
        pass
    return position(node)


@dataclass(frozen=True)
class Spans:
    """Where a YAML node and everything in it were written, kept beside what was read from it.

    For a mapping, ``of(key)`` is where the value of ``key`` was written, or where the mapping
    itself starts when the key was not written (so a mistake about a default still points
    somewhere sensible); ``section(key)`` is the same for the mapping or list written at ``key``,
    and ``item(index)`` for the items of a list.
    """

    node: Span
    values: Mapping[str, Span] = field(default_factory=dict)
    sections: Mapping[str, Spans] = field(default_factory=dict)
    items: tuple[Spans, ...] = ()

    def of(self, key: str) -> Span:
        """Where the value of ``key`` was written (the mapping's own position if it was not)."""
        return self.values.get(key, self.node)

    def section(self, key: str) -> Spans:
        """The spans of the mapping or list written at ``key`` (only its position if it is neither)."""
        found = self.sections.get(key)
        return found if found is not None else Spans(self.of(key))

    def item(self, index: int) -> Spans:
        """The spans of a list's item ``index`` (the list's own position if there is no such item)."""
        return self.items[index] if 0 <= index < len(self.items) else Spans(self.node)


NOT_FROM_A_FILE = Spans(Span("<not read from a file>", 1, 1))


def spans_of(filename: str, node: Any, at: Span | None = None) -> Spans:
    """The positions of ``node`` and of every value in it, nested mappings and lists included.

    ``at`` overrides the node's own position (a whole file's mapping is placed at 1:1).
    """
    here = at if at is not None else Span(filename, *position(node))
    if isinstance(node, CommentedMap):
        values: dict[str, Span] = {}
        sections: dict[str, Spans] = {}
        for key, value in node.items():
            values[str(key)] = Span(filename, *position(node, key))
            if isinstance(value, CommentedMap | CommentedSeq):
                sections[str(key)] = spans_of(filename, value)
        return Spans(here, values, sections)
    if isinstance(node, CommentedSeq):
        return Spans(here, items=tuple(_item_spans(filename, node, index) for index in range(len(node))))
    return Spans(here)


def _item_spans(filename: str, node: CommentedSeq, index: int) -> Spans:
    item = node[index]
    if isinstance(item, CommentedMap | CommentedSeq):
        return spans_of(filename, item)
    return Spans(Span(filename, *position(node, index)))


@dataclass
class Problems:
    """Collects every mistake in one file so that all of them are reported together."""

    filename: str
    items: list[Problem] = field(default_factory=list)

    def at(self, node: Any, key: Any, message: str) -> None:
        """Record a problem at the value of ``key`` in ``node`` (or at ``node`` if key is None)."""
        line, col = position(node, key)
        self.items.append(Problem(self.filename, line, col, message))

    def at_key(self, node: Any, key: Any, message: str) -> None:
        """Record a problem at the key ``key`` of mapping ``node``."""
        line, col = key_position(node, key)
        self.items.append(Problem(self.filename, line, col, message))

    def raise_if_any(self) -> None:
        """Raise ConfigError with everything collected, if anything was."""
        if self.items:
            raise ConfigError(self.items)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def is_mapping(node: Any) -> bool:
    """True for a YAML mapping."""
    return isinstance(node, dict)


def is_sequence(node: Any) -> bool:
    """True for a YAML list."""
    return isinstance(node, list)
