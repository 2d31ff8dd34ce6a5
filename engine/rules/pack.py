"""Loading a rule pack: keywords, templates and the ordered rules, validated whole against the registries.

A pack may ``extends:`` another (a bundled name or a path). The child's keyword slots and
templates replace the parent's one by one; a child rule with a parent rule's name replaces it in
place; ``remove:`` drops parent rules; any other child rule goes before the parent's rules, or
where its ``before:`` / ``after:`` says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.actions.base import Action, action_class, action_names, build_action
from engine.errors import ConfigError, Problem, did_you_mean
from engine.resources import bundled_pack_names, rules_dir
from engine.rules.conditions import ALWAYS, Condition, Facts, parse_condition
from engine.rules.templates import MessageTemplate, compile_templates
from engine.subject import DEFAULT_KEYWORDS, KeywordError, Keywords, compile_keywords, keyword_slots
from engine.yamlsource import Problems, is_mapping, is_sequence, load_yaml_file, position

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
class RulePack:
    """A validated pack, ready to decide."""

    name: str
    path: Path
    keywords: Keywords
    templates: Mapping[str, MessageTemplate]
    rules: tuple[Rule, ...]
    parents: tuple[Path, ...] = field(default=())

    def decide(self, facts: Facts) -> Rule | None:
        """The first rule whose condition holds, or None."""
        for rule in self.rules:
            if rule.when.holds(facts):
                return rule
        return None


def resolve_pack_path(ref: str, base_dir: Path) -> Path | None:
    """Where a pack reference points: a path (relative to ``base_dir``) or a bundled pack's name."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref:
        path = Path(ref)
        return path if path.is_absolute() else (base_dir / path)
    local = base_dir / "rules" / f"{ref}.yaml"
    if local.is_file():
        return local
    bundled = rules_dir() / f"{ref}.yaml"
    return bundled if bundled.is_file() else None


_CACHE: dict[tuple[Path, float], RulePack] = {}


def load_pack(ref: str, base_dir: Path, *, where: Problem | None = None) -> RulePack:
    """Load and validate a pack (cached while its file is unchanged); ConfigError lists every mistake."""
    path = resolve_pack_path(ref, base_dir)
    if path is None or not path.is_file():
        known = bundled_pack_names()
        message = f"rule pack {ref!r} not found{did_you_mean(ref, known)}; bundled packs: {', '.join(known)}"
        loc = where or Problem(str(base_dir), 1, 1, "")
        raise ConfigError([Problem(loc.file, loc.line, loc.col, message)])
    path = path.resolve()
    key = (path, path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _load_pack_file(path, ())
    return _CACHE[key]


def _load_pack_file(path: Path, chain: tuple[Path, ...]) -> RulePack:
    data = load_yaml_file(path)
    problems = Problems(str(path))
    if not is_mapping(data):
        problems.at(data, None, "a rule pack must be a mapping with keys " + ", ".join(_PACK_KEYS))
        problems.raise_if_any()
    for key in data:
        if key not in _PACK_KEYS:
            problems.at_key(
                data, key, f"unknown key {key!r} in a rule pack{did_you_mean(str(key), _PACK_KEYS)}"
            )
    parent = _load_parent(data, path, chain, problems)
    keywords = _read_keywords(
        data.get("keywords"), data, parent.keywords if parent else DEFAULT_KEYWORDS, problems
    )
    templates: dict[str, MessageTemplate] = dict(parent.templates) if parent else {}
    templates.update(compile_templates(data.get("templates"), problems))
    own_rules = _read_rules(data, path, problems)
    rules = _merge_rules(parent.rules if parent else (), own_rules, data, problems)
    pack = RulePack(
        name=str(data.get("name") or path.stem),
        path=path,
        keywords=keywords,
        templates=templates,
        rules=tuple(r for r, _ in rules),
        parents=((parent.path, *parent.parents) if parent else ()),
    )
    _check_steps(pack, problems)
    if not pack.rules:
        problems.at(data, None, "the pack has no rules")
    problems.raise_if_any()
    return pack


def _load_parent(data: Any, path: Path, chain: tuple[Path, ...], problems: Problems) -> RulePack | None:
    ref = data.get("extends")
    if ref is None:
        return None
    if not isinstance(ref, str):
        problems.at(data, "extends", "extends takes the name or path of another pack")
        return None
    parent_path = resolve_pack_path(ref, path.parent)
    if parent_path is None or not parent_path.is_file():
        known = bundled_pack_names()
        problems.at(data, "extends", f"rule pack {ref!r} not found{did_you_mean(ref, known)}")
        return None
    parent_path = parent_path.resolve()
    if parent_path == path or parent_path in chain:
        problems.at(data, "extends", f"pack {ref!r} extends itself (through {parent_path.name})")
        return None
    try:
        return _load_pack_file(parent_path, (*chain, path))
    except ConfigError as exc:
        problems.items.extend(exc.problems)
        return None


def _read_keywords(node: Any, parent_node: Any, base: Keywords, problems: Problems) -> Keywords:
    if node is None:
        return base
    if not is_mapping(node):
        problems.at(parent_node, "keywords", "keywords must map a keyword slot to a list of words")
        return base
    slots = keyword_slots()
    changes: dict[str, tuple[str, ...]] = {}
    for slot, words in node.items():
        if slot not in slots:
            problems.at_key(node, slot, f"unknown keyword slot {slot!r}{did_you_mean(str(slot), slots)}")
            continue
        values = list(words) if is_sequence(words) else [words]
        if not values or not all(isinstance(w, str) and w.strip() for w in values):
            problems.at(node, slot, f"keywords.{slot} must be a non-empty list of words")
            continue
        changes[str(slot)] = tuple(w.strip() for w in values)
    try:
        keywords = dataclasses.replace(base, **changes)
        compile_keywords(keywords)
    except (ValueError, KeywordError) as exc:
        problems.at(parent_node, "keywords", f"keywords: {exc}")
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
    if not isinstance(name, str) or not name:
        problems.at(node, None, "rule has no name")
        return None
    outcome = node.get("outcome")
    if outcome not in OUTCOMES:
        where = "outcome" if "outcome" in node else None
        problems.at(
            node, where, f"rule {name!r}: outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}"
        )
    when = parse_condition(node.get("when"), node, "when", problems) if "when" in node else ALWAYS
    steps = _read_steps(node, name, path, problems)
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
        cls = action_class(name) if isinstance(name, str) else None
        if cls is None:
            where = "do" if params_key is None and "do" in step_node_map else params_key
            problems.at(
                params_node, where, f"unknown action {name!r}{did_you_mean(str(name), action_names())}"
            )
            continue
        params = {k: v for k, v in step_node_map.items() if k not in ("do", "when")}
        action, mistakes = build_action(cls, params)
        for param, message in mistakes:
            problems.at(params_node, param if param is not None else params_key, message)
        when = parse_condition(step_node_map.get("when"), params_node, "when", problems)
        line, col = position(then, index)
        if action is not None:
            steps.append(Step(action, when, f"{path}:{line}:{col}"))
    return tuple(steps)


def _merge_rules(
    inherited: tuple[Rule, ...], own: list[tuple[Rule, Any]], data: Any, problems: Problems
) -> list[tuple[Rule, Any]]:
    merged: list[tuple[Rule, Any]] = [(r, None) for r in inherited]
    removed = data.get("remove") or []
    if not is_sequence(removed):
        problems.at(data, "remove", "remove takes a list of rule names")
        removed = []
    names = [r.name for r, _ in merged]
    for index, name in enumerate(removed):
        if name not in names:
            problems.at(removed, index, f"remove: no inherited rule {name!r}{did_you_mean(str(name), names)}")
    merged = [(r, n) for r, n in merged if r.name not in removed]
    front: list[tuple[Rule, Any]] = []
    for rule, node in own:
        at = next((i for i, (r, _) in enumerate(merged) if r.name == rule.name), None)
        anchor_key = "before" if "before" in node else "after" if "after" in node else None
        if at is not None and anchor_key is None:
            merged[at] = (rule, node)
            continue
        if anchor_key is None:
            front.append((rule, node))
            continue
        anchor = node[anchor_key]
        target = next((i for i, (r, _) in enumerate(merged) if r.name == anchor), None)
        if target is None:
            known = [r.name for r, _ in merged]
            problems.at(
                node, anchor_key, f"{anchor_key}: no rule {anchor!r}{did_you_mean(str(anchor), known)}"
            )
            continue
        if at is not None:
            merged.pop(at)
            target = target - 1 if at < target else target
        merged.insert(target if anchor_key == "before" else target + 1, (rule, node))
    return front + merged


def _check_steps(pack: RulePack, problems: Problems) -> None:
    """Ask every step (inherited ones too) what it thinks of this pack, e.g. of its templates."""
    for rule in pack.rules:
        for step in rule.steps:
            for message in step.action.check(pack):
                file, line, col = step.where.rsplit(":", 2)
                problems.items.append(Problem(file, int(line), int(col), f"rule {rule.name!r}: {message}"))
