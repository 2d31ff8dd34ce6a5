"""Loading a rule pack: keywords, templates and the ordered rules, validated whole against the registries.

A pack may ``extends:`` another (a pack beside it, a bundled pack, or a path). The child's keyword
slots and templates replace the parent's one by one; ``remove:`` drops parent rules; a child rule
with a parent rule's name replaces it in place; a child rule with ``before:`` / ``after:`` goes
there; any other child rule goes in front of the parent's rules (see ``engine.rules.merge``).

Longer than 400 lines because the pack is both checked here, whole, with the position of each
mistake, and chooses here, once per set of fact values, the rule a message gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.actions.base import Action
from engine.actions.registry import UnknownAction, action_class, action_names, build_action
from engine.config.yaml_source import Problems, is_mapping, is_sequence, load_pack_yaml_file, position
from engine.errors import ConfigError, Problem, Span, did_you_mean
from engine.resources import bundled_pack_names, rules_dir
from engine.rules.conditions import ALWAYS, Condition, Facts, facts_read, failing_part, parse_condition
from engine.rules.facts import FactValue
from engine.rules.merge import merge_rules
from engine.rules.subject import compile_keywords
from engine.rules.templates import SAMPLE_VARIABLES, MessageTemplate, compile_templates
from engine.rules.vocabulary import (
    KeywordError,
    Keywords,
    default_keywords,
    default_pack_path,
    keywords_of_default_pack,
    read_keywords,
)

OUTCOMES = (
    "logged",
    "updated",
    "noted",
    "reopened",
    "closed",
    "approved",
    "rejected",
    "summary",
    "refused",
    "ignored",
    "bounce_deleted",
)
_PACK_KEYS = ("name", "description", "extends", "keywords", "templates", "rules", "remove")
_RULE_KEYS = ("name", "description", "when", "outcome", "then", "before", "after")


@dataclass(frozen=True)
class Step:
    """One action of a rule's chain, run only when its own ``when`` holds."""

    action: Action
    when: Condition
    where: str


@dataclass(frozen=True)
class Rule:
    """A named rule: when its condition holds, its steps run and the message gets its outcome."""

    name: str
    description: str
    when: Condition
    outcome: str
    steps: tuple[Step, ...]
    where: str


@dataclass(frozen=True)
class RuleTried:
    """One rule tested for a message (``mailgate explain``): whether it held, and if not, why not."""

    rule: str
    matched: bool
    why: str = ""


@dataclass(frozen=True)
class Choice:
    """What a pack chose for some facts: the rule (None if none holds), its steps with whether
    each runs, and every rule tried, in order, with why it did not hold."""

    rule: Rule | None
    steps: tuple[tuple[Step, bool], ...]
    tried: tuple[RuleTried, ...]


CHOICES_KEPT = 1024  # a pack keeps the choices for this many sets of fact values, then starts afresh


@dataclass(frozen=True)
class RulePack:
    """A validated pack, ready to decide."""

    name: str
    path: Path
    keywords: Keywords
    templates: Mapping[str, MessageTemplate]
    rules: tuple[Rule, ...]
    parents: tuple[Path, ...] = field(default=())
    # each (rule, failing part) made once: a traced decision allocates nothing per rule tried
    _tried: dict[tuple[int, int], RuleTried] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # the choice for each set of values of the facts the pack reads (see ``choose``)
    _choices: dict[tuple[FactValue, ...], Choice] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _tried_lists: dict[tuple[RuleTried, ...], tuple[RuleTried, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @cached_property
    def facts_read(self) -> tuple[str, ...]:
        """The names of the facts the pack's conditions read, its rules' and their steps'."""
        names: set[str] = set()
        for rule in self.rules:
            names |= facts_read(rule.when)
            for step in rule.steps:
                names |= facts_read(step.when)
        return tuple(sorted(names))

    def choose(self, facts: Facts) -> Choice:
        """``decide`` with each rule tried, and the chosen rule's steps with whether each runs.

        A condition holds or fails on the values of the facts it reads alone, and a pack reads a
        few facts whose values most messages share: so the choice is made once for each set of
        those values and shared (its rules tried are the same objects, for ``decision_trace``).
        """
        key = tuple([facts.get(name) for name in self.facts_read])
        found = self._choices.get(key)
        if found is None:
            tried: list[RuleTried] = []
            rule = self.decide(facts, tried)
            steps = tuple((step, step.when.holds(facts)) for step in rule.steps) if rule else ()
            if len(self._choices) >= CHOICES_KEPT:
                self._choices.clear()
                self._tried_lists.clear()
            # choices that tried the same rules with the same outcome share one list (one encoding)
            shared = self._tried_lists.setdefault(tuple(tried), tuple(tried))
            found = self._choices[key] = Choice(rule, steps, shared)
        return found

    def decide(self, facts: Facts, tried: list[RuleTried] | None = None) -> Rule | None:
        """The first rule whose condition holds, or None; each rule tested is added to ``tried`` if given."""
        if tried is None:
            return next((rule for rule in self.rules if rule.when.holds(facts)), None)
        for rule in self.rules:
            failing = failing_part(rule.when, facts)
            key = (id(rule), id(failing))  # both live as long as the pack: their ids are theirs
            found = self._tried.get(key)
            if found is None:
                why = "" if failing is None else f"fails: {failing.describe()}"
                found = self._tried.setdefault(key, RuleTried(rule.name, failing is None, why))
            tried.append(found)
            if failing is None:
                return rule
        return None


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref


def resolve_pack_path(ref: str, base_dir: Path) -> Path | None:
    """Where a config's ``rule_pack`` points: a path, ``base_dir/rules/NAME.yaml``, or a bundled pack."""
    if _looks_like_path(ref):
        path = Path(ref)
        return path if path.is_absolute() else (base_dir / path)
    local = base_dir / "rules" / f"{ref}.yaml"
    if local.is_file():
        return local
    bundled = rules_dir() / f"{ref}.yaml"
    return bundled if bundled.is_file() else None


def resolve_parent_path(ref: str, child: Path) -> Path | None:
    """Where a pack's ``extends`` points: a path (relative to the pack), a pack beside it, or a bundled pack.

    A pack never finds itself by name, so ``rules/default.yaml`` may say ``extends: default``
    to build on the bundled pack of the same name.
    """
    if _looks_like_path(ref):
        path = Path(ref)
        return path if path.is_absolute() else (child.parent / path)
    sibling = child.parent / f"{ref}.yaml"
    if sibling.is_file() and sibling.resolve() != child.resolve():
        return sibling
    bundled = rules_dir() / f"{ref}.yaml"
    return bundled if bundled.is_file() else None


@dataclass(frozen=True)
class _Cached:
    stamps: tuple[tuple[Path, int, int], ...]
    pack: RulePack


_CACHE: dict[Path, _Cached] = {}


def _stamps(paths: tuple[Path, ...]) -> tuple[tuple[Path, int, int], ...] | None:
    """(path, mtime_ns, size) of every file a pack was built from; None if one is gone."""
    try:
        return tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    except OSError:
        return None


def load_pack(ref: str, base_dir: Path, *, where: Span | None = None) -> RulePack:
    """Load and validate a pack (cached while its files are unchanged); ConfigError lists every mistake.

    ``where`` is where ``ref`` was written (a config's ``rule_pack:``), for a pack that is not found.
    """
    path = resolve_pack_path(ref, base_dir)
    if path is None or not path.is_file():
        known = bundled_pack_names()
        message = f"rule pack {ref!r} not found{did_you_mean(ref, known)}; bundled packs: {', '.join(known)}"
        raise ConfigError([(where or Span(str(base_dir), 1, 1)).problem(message)])
    path = path.resolve()
    cached = _CACHE.get(path)
    if cached is not None and _stamps((path, *cached.pack.parents)) == cached.stamps:
        return cached.pack
    pack = _load_pack_file(path, ())
    stamps = _stamps((path, *pack.parents))
    if stamps is not None:
        _CACHE[path] = _Cached(stamps, pack)
    return pack


def _load_pack_file(path: Path, chain: tuple[Path, ...]) -> RulePack:
    data = load_pack_yaml_file(path)
    problems = Problems(str(path))
    if not is_mapping(data):
        problems.at(data, None, "a rule pack must be a mapping with keys " + ", ".join(_PACK_KEYS))
        problems.raise_if_any()
    for key in data:
        if key not in _PACK_KEYS:
            problems.at_key(
                data, key, f"unknown key {key!r} in a rule pack{did_you_mean(str(key), _PACK_KEYS)}"
            )
    parent, parent_ok = _load_parent(data, path, chain, problems)
    keywords = _read_pack_keywords(data, path, parent, problems)
    templates: dict[str, MessageTemplate] = dict(parent.templates) if parent else {}
    templates_node = data.get("templates")
    own_templates = compile_templates(templates_node, problems, SAMPLE_VARIABLES)
    templates.update(own_templates)
    written = set(map(str, templates_node)) if is_mapping(templates_node) else set()
    broken_templates = written - set(own_templates)
    own_rules = _read_rules(data, path, problems)
    rules = merge_rules(parent.rules if parent else (), own_rules, data, problems, complain=parent_ok)
    pack = RulePack(
        name=str(data.get("name") or path.stem),
        path=path,
        keywords=keywords,
        templates=templates,
        rules=tuple(rules),
        parents=((parent.path, *parent.parents) if parent else ()),
    )
    if parent_ok:
        # With a broken parent, its rules and templates are unknown: checking more would only
        # repeat the parent's mistakes as phantom ones here.
        _check_steps(pack, broken_templates, problems)
        if not pack.rules:
            problems.at(data, None, "the pack has no rules")
    problems.raise_if_any()
    return pack


def _load_parent(
    data: Any, path: Path, chain: tuple[Path, ...], problems: Problems
) -> tuple[RulePack | None, bool]:
    """The parent pack (None if the pack extends nothing) and whether it loaded cleanly."""
    ref = data.get("extends")
    if ref is None:
        return None, True
    if not isinstance(ref, str) or not ref.strip():
        problems.at(data, "extends", "extends takes the name or path of another pack")
        return None, False
    parent_path = resolve_parent_path(ref, path)
    if parent_path is None or not parent_path.is_file():
        known = bundled_pack_names()
        problems.at(
            data,
            "extends",
            f"rule pack {ref!r} not found{did_you_mean(ref, known)}; bundled packs: {', '.join(known)}",
        )
        return None, False
    parent_path = parent_path.resolve()
    if parent_path == path or parent_path in chain:
        loop = (*chain, path, parent_path)
        shown = " -> ".join(p.name for p in loop[loop.index(parent_path) :])
        problems.at(data, "extends", f"extends {ref!r} makes a cycle: {shown}")
        return None, False
    try:
        return _load_pack_file(parent_path, (*chain, path)), True
    except ConfigError as exc:
        problems.items.extend(exc.problems)
        return None, False


def _read_pack_keywords(data: Any, path: Path, parent: RulePack | None, problems: Problems) -> Keywords:
    """The pack's keywords over its parent's (a pack that extends nothing builds on the bundled default's)."""
    if parent is not None:
        base = parent.keywords
    elif path.resolve() == default_pack_path().resolve():  # the defaults' own file, parsed already
        base = keywords_of_default_pack(data, path)
    else:
        base = default_keywords()
    keywords = read_keywords(data.get("keywords"), data, base, problems)
    if keywords is None:
        return base
    try:
        compile_keywords(keywords)
    except KeywordError as exc:
        problems.at(data, "keywords" if "keywords" in data else None, f"keywords: {exc}")
        return base
    return keywords


def _read_rules(data: Any, path: Path, problems: Problems) -> list[tuple[Rule, Any]]:
    node = data.get("rules")
    if node is None:
        return []
    if not is_sequence(node):
        problems.at(data, "rules", "rules must be a list")
        return []
    rules: list[tuple[Rule, Any]] = []
    seen: set[str] = set()
    for index, rule_node in enumerate(node):
        rule = _read_rule(node, index, rule_node, path, problems)
        if rule is None:
            continue
        if rule.name in seen:
            problems.at(rule_node, "name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        rules.append((rule, rule_node))
    return rules


def _read_rule(parent: Any, index: int, node: Any, path: Path, problems: Problems) -> Rule | None:
    if not is_mapping(node):
        problems.at(parent, index, "each rule must be a mapping with name, when, outcome and then")
        return None
    for key in node:
        if key not in _RULE_KEYS:
            problems.at_key(node, key, f"unknown key {key!r} in a rule{did_you_mean(str(key), _RULE_KEYS)}")
    name = node.get("name")
    named = isinstance(name, str) and bool(name.strip())
    if not named:
        problems.at(
            node, "name" if "name" in node else None, "a rule needs a name (a word such as close_call)"
        )
        name = f"#{index + 1}"
    outcome = node.get("outcome")
    if outcome not in OUTCOMES:
        where = "outcome" if "outcome" in node else None
        problems.at(
            node,
            where,
            f"rule {name!r}: outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}"
            + (did_you_mean(outcome, OUTCOMES) if isinstance(outcome, str) else ""),
        )
    when = parse_condition(node.get("when"), node, "when", problems) if "when" in node else ALWAYS
    steps = _read_steps(node, name, path, problems)
    if not named:
        return None
    line, col = position(node)
    return Rule(name, str(node.get("description") or ""), when, str(outcome), steps, f"{path}:{line}:{col}")


def _read_steps(node: Any, rule_name: str, path: Path, problems: Problems) -> tuple[Step, ...]:
    then = node.get("then")
    if then is None:
        return ()
    if not is_sequence(then):
        problems.at(node, "then", f"rule {rule_name!r}: then must be a list of steps (- do: ACTION)")
        return ()
    steps: list[Step] = []
    for index, step_node in enumerate(then):
        if isinstance(step_node, str):
            step_node_map: Any = {"do": step_node}
            params_node: Any = then
            params_key: Any = index
        elif is_mapping(step_node):
            step_node_map, params_node, params_key = step_node, step_node, None
        else:
            problems.at(then, index, "a step is '- do: ACTION' with the action's parameters beside it")
            continue
        name = step_node_map.get("do")
        try:
            if not isinstance(name, str):
                raise UnknownAction(f"unknown action {name!r}{did_you_mean(str(name), action_names())}")
            cls = action_class(name)
        except UnknownAction as exc:  # unknown, or a plugin that cannot be loaded
            where = "do" if params_key is None and "do" in step_node_map else params_key
            problems.at(params_node, where, str(exc))
            continue
        params = {k: v for k, v in step_node_map.items() if k not in ("do", "when")}
        action, mistakes = build_action(cls, params)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for param, message in mistakes:
            if param is not None and param not in known and params_key is None:
                problems.at_key(params_node, param, message)
            else:
                problems.at(params_node, param if param is not None else params_key, message)
        when = parse_condition(step_node_map.get("when"), params_node, "when", problems)
        line, col = position(then, index)
        if action is not None:
            steps.append(Step(action, when, f"{path}:{line}:{col}"))
    return tuple(steps)


def _check_steps(pack: RulePack, broken_templates: set[str], problems: Problems) -> None:
    """Ask every step (inherited ones too) what it thinks of this pack, e.g. of its templates.

    Steps naming a template this pack got wrong are skipped: that mistake is already reported
    where the template is written.
    """
    for rule in pack.rules:
        for step in rule.steps:
            if getattr(step.action, "template", None) in broken_templates:
                continue
            for message in step.action.check(pack):
                file, line, col = step.where.rsplit(":", 2)
                problems.items.append(Problem(file, int(line), int(col), f"rule {rule.name!r}: {message}"))
