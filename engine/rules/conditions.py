"""Conditions: the ``when:`` of a rule or an action step, parsed once at load and evaluated per message.

YAML forms:
    when:                       # a mapping: every entry must hold
      intent: close_call        # a fact equals a value
      message.bounce_code: [501, 503, 550, 553]   # a fact is one of these
      sender.known: {not: true} # negation of a value test
      any:                      # at least one of these conditions holds
        - {sender.is_analyst: true, sender.owns_target: true}
        - {sender.take_over: true}
      not: {target.exists: true}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from engine.config.yaml_source import Problems, is_mapping, is_sequence
from engine.errors import did_you_mean
from engine.rules.facts import FACTS, FactValue

Facts = Mapping[str, FactValue]


@dataclass(frozen=True)
class FactTest:
    """A fact compared with one or more values (optionally negated)."""

    fact: str
    values: tuple[FactValue, ...]
    negate: bool = False

    def holds(self, facts: Facts) -> bool:
        """Whether the fact's value is among the values (or not, when negated)."""
        return (facts.get(self.fact) in self.values) != self.negate

    def describe(self) -> str:
        """A short text for ``mailgate explain`` (made once: every traced decision shows it)."""
        return self._description

    @cached_property
    def _description(self) -> str:
        if len(self.values) == 1:
            return f"{self.fact} {'!=' if self.negate else '=='} {self.values[0]!r}"
        return f"{self.fact} {'not in' if self.negate else 'in'} {list(self.values)!r}"


@dataclass(frozen=True)
class AllOf:
    """Every part holds (an empty AllOf always holds)."""

    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> bool:
        """Whether every part holds."""
        return all(p.holds(facts) for p in self.parts)

    def describe(self) -> str:
        """A short text for ``mailgate explain`` (made once)."""
        return self._description

    @cached_property
    def _description(self) -> str:
        return " and ".join(p.describe() for p in self.parts) or "always"


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> bool:
        """Whether some part holds."""
        return any(p.holds(facts) for p in self.parts)

    def describe(self) -> str:
        """A short text for ``mailgate explain`` (made once)."""
        return self._description

    @cached_property
    def _description(self) -> str:
        return "(" + " or ".join(p.describe() for p in self.parts) + ")"


@dataclass(frozen=True)
class Not:
    """The inner condition does not hold."""

    inner: Condition

    def holds(self, facts: Facts) -> bool:
        """Whether the inner condition fails."""
        return not self.inner.holds(facts)

    def describe(self) -> str:
        """A short text for ``mailgate explain`` (made once)."""
        return self._description

    @cached_property
    def _description(self) -> str:
        return f"not ({self.inner.describe()})"


Condition = FactTest | AllOf | AnyOf | Not
ALWAYS = AllOf(())


def facts_read(condition: Condition) -> frozenset[str]:
    """The names of the facts a condition reads: it holds or fails on their values alone."""
    if isinstance(condition, FactTest):
        return frozenset((condition.fact,))
    if isinstance(condition, Not):
        return facts_read(condition.inner)
    return frozenset().union(*(facts_read(part) for part in condition.parts))


def first_failing(condition: Condition, facts: Facts) -> str | None:
    """The description of the first part that makes a condition fail, or None if it holds."""
    part = failing_part(condition, facts)
    return part.describe() if part is not None else None


def failing_part(condition: Condition, facts: Facts) -> Condition | None:
    """The first part that makes a condition fail (the innermost ``all:`` part), or None if it holds.

    One pass: each part is tested once, so a traced decision costs little more than ``holds``.
    """
    if isinstance(condition, AllOf):
        for part in condition.parts:
            failing = failing_part(part, facts)
            if failing is not None:
                return failing
        return None
    return None if condition.holds(facts) else condition


def parse_condition(node: Any, parent: Any, key: Any, problems: Problems) -> Condition:
    """Turn a YAML ``when:`` node into a Condition, recording every mistake with its position."""
    if node is None:
        return ALWAYS
    if not is_mapping(node):
        problems.at(parent, key, "a condition must be a mapping of facts to values (or any:/all:/not:)")
        return ALWAYS
    parts: list[Condition] = []
    for name, value in node.items():
        if name in ("any", "all"):
            if not is_sequence(value) or not value:
                problems.at(node, name, f"{name}: takes a non-empty list of conditions")
                continue
            inner = tuple(parse_condition(item, value, i, problems) for i, item in enumerate(value))
            parts.append(AnyOf(inner) if name == "any" else AllOf(inner))
        elif name == "not":
            parts.append(Not(parse_condition(value, node, name, problems)))
        else:
            test = _parse_fact_test(str(name), value, node, problems)
            if test is not None:
                parts.append(test)
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _parse_fact_test(name: str, value: Any, node: Any, problems: Problems) -> FactTest | None:
    spec = FACTS.get(name)
    if spec is None:
        problems.at_key(node, name, f"unknown fact {name!r}{did_you_mean(name, FACTS)}")
        return None
    negate = False
    holder, key = node, name  # where the value (or list of values) is written
    if is_mapping(value):
        if list(value) != ["not"]:
            problems.at(node, name, f"{name}: a mapping here may only be {{not: VALUE}}")
            return None
        negate, holder, key, value = True, value, "not", value["not"]
    values = list(value) if is_sequence(value) else [value]
    if not values:
        problems.at(holder, key, f"{name}: the list of values is empty")
        return None
    ok = True
    for index, item in enumerate(values):
        if not spec.accepts(item):
            hint = did_you_mean(item, spec.choices) if spec.choices and isinstance(item, str) else ""
            where = (value, index) if is_sequence(value) else (holder, key)
            problems.at(
                where[0], where[1], f"{name} is {spec.describe_type()}; {item!r} can never match{hint}"
            )
            ok = False
    return FactTest(name, tuple(values), negate) if ok else None
