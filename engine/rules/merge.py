"""How a child pack's rules combine with the rules it inherits through ``extends:``.

In this order: ``remove:`` drops inherited rules by name; a child rule with an inherited rule's
name and no ``before:``/``after:`` replaces it in place; the other child rules without an anchor
go in front of the inherited ones, in file order; last, every rule with ``before: NAME`` or
``after: NAME`` is put just before or after that rule (moving it if it replaces an inherited one).
Several rules anchored to the same rule keep their file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from engine.config.yaml_source import Problems, is_sequence
from engine.errors import did_you_mean


class Named(Protocol):
    """Anything with a rule name."""

    @property
    def name(self) -> str:
        """The rule's name."""
        ...


R = TypeVar("R", bound=Named)


def merge_rules(
    inherited: Sequence[R],
    own: Sequence[tuple[R, Any]],
    data: Any,
    problems: Problems,
    *,
    complain: bool = True,
) -> list[R]:
    """The pack's final rule order; ``own`` pairs each child rule with its YAML node.

    With ``complain`` false (the parent failed to load) names that cannot be found are not
    reported, since the parent's rules are unknown.
    """
    removed = _removals(inherited, data, problems, complain)
    merged = [r for r in inherited if r.name not in removed]
    front: list[R] = []
    anchored: list[tuple[R, Any, str, str]] = []
    for rule, node in own:
        anchor = _anchor(rule, node, problems)
        if anchor is not None:
            anchored.append((rule, node, *anchor))
            continue
        at = next((i for i, r in enumerate(merged) if r.name == rule.name), None)
        if at is None:
            front.append(rule)
        else:
            merged[at] = rule
    result = front + merged
    _place_anchored(result, anchored, problems, complain)
    return result


def _removals(inherited: Sequence[Named], data: Any, problems: Problems, complain: bool) -> set[str]:
    node = data.get("remove")
    if node is None:
        return set()
    if not is_sequence(node):
        problems.at(data, "remove", "remove takes a list of rule names")
        return set()
    names = [r.name for r in inherited]
    removed: set[str] = set()
    for index, name in enumerate(node):
        if not isinstance(name, str):
            problems.at(node, index, f"remove takes rule names, not {name!r}")
        elif name not in names and complain:
            where = "" if names else " (this pack extends no other pack)"
            problems.at(node, index, f"remove: no inherited rule {name!r}{did_you_mean(name, names)}{where}")
        else:
            removed.add(name)
    return removed


def _anchor(rule: Named, node: Any, problems: Problems) -> tuple[str, str] | None:
    """``("before"|"after", target)`` for a rule placed relative to another, or None."""
    keys = [k for k in ("before", "after") if k in node]
    if not keys:
        return None
    if len(keys) == 2:
        problems.at(node, "after", f"rule {rule.name!r}: use before: or after:, not both")
        return None
    key = keys[0]
    target = node[key]
    if not isinstance(target, str) or not target:
        problems.at(node, key, f"rule {rule.name!r}: {key} takes the name of a rule")
        return None
    if target == rule.name:
        problems.at(node, key, f"rule {rule.name!r}: a rule cannot go {key} itself")
        return None
    return key, target


def _place_anchored(
    result: list[R], anchored: list[tuple[R, Any, str, str]], problems: Problems, complain: bool
) -> None:
    """Insert each anchored rule; a rule anchored to another anchored rule waits until that one is placed."""
    last_after: dict[str, str] = {}
    pending = anchored
    while pending:
        waiting: list[tuple[R, Any, str, str]] = []
        for entry in pending:
            rule, _node, key, target = entry
            names = [r.name for r in result]
            if target not in names:
                waiting.append(entry)
                continue
            if rule.name in names:
                result.pop(names.index(rule.name))
                names.remove(rule.name)
            if key == "before":
                result.insert(names.index(target), rule)
            else:
                previous = last_after.get(target, target)
                result.insert(names.index(previous if previous in names else target) + 1, rule)
                last_after[target] = rule.name
        if len(waiting) == len(pending):
            if complain:
                known = [r.name for r in result]
                for _rule, node, key, target in waiting:
                    problems.at(node, key, f"{key}: no rule {target!r}{did_you_mean(target, known)}")
            return
        pending = waiting
