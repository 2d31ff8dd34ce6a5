"""Checks a fixture file (see ``engine.storage.fixtures`` for its shape) before anything is written.

``read_fixture`` checks each entry's fields against ``FIELDS``; ``check_references`` checks that every
person, group and request named exists in the file or the database. Each mistake is recorded in
``problems`` at its position, so the caller can report them all and write nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.config.yaml_source import Problems, is_mapping, is_sequence, key_position
from engine.errors import did_you_mean
from engine.storage.models import Group, Person, Request

SECTIONS = ("groups", "people", "calls", "requests", "tasks")
MAX_NUMBER = 2**31 - 1  # the largest whole number every database's integer column holds


@dataclass(frozen=True)
class FixtureField:
    """One field of a fixture entry: how its value is checked and which column (if any) it sets."""

    kind: str  # text | name | email | flag | number | choice | person | group | request | group_list
    column: str | None = None
    choices: tuple[str, ...] = ()
    required: bool = False


REFERENCE_KINDS = ("person", "group", "request")
_NUMBER = FixtureField("number", required=True)
_SUMMARY = FixtureField("text", "summary")
_DESCRIPTION = FixtureField("text", "description")
_ANALYST = FixtureField("person", "assigned_analyst_id")

FIELDS: dict[str, dict[str, FixtureField]] = {
    "groups": {"name": FixtureField("name", required=True)},
    "people": {
        "email": FixtureField("email", required=True),
        "name": FixtureField("text", "name"),
        "user": FixtureField("flag", "is_user"),
        "analyst": FixtureField("flag", "is_analyst"),
        "take_over": FixtureField("flag", "take_over"),
        "groups": FixtureField("group_list"),
    },
    "calls": {
        "number": _NUMBER,
        "status": FixtureField("choice", "status", ("open", "closed")),
        "user": FixtureField("person", "user_id"),
        "assigned_analyst": _ANALYST,
        "assigned_group": FixtureField("group", "assigned_group_id"),
        "forwarded_by": FixtureField("person"),
        "forwarded_to": FixtureField("person"),
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
    "requests": {
        "number": _NUMBER,
        "status": FixtureField("choice", "status", ("open", "approved", "rejected", "closed")),
        "user": FixtureField("person", "user_id"),
        "assigned_analyst": _ANALYST,
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
    "tasks": {
        "number": _NUMBER,
        "kind": FixtureField("choice", "kind", ("task", "approval", "user_approval")),
        "status": FixtureField("choice", "status", ("open", "pending", "approved", "rejected", "closed")),
        "request": FixtureField("request", "request_id"),
        "sequence": FixtureField("number", "sequence"),
        "approver": FixtureField("person", "approver_person_id"),
        "approver_group": FixtureField("group", "approver_group_id"),
        "assigned_analyst": _ANALYST,
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
}

_SINGULAR = {"groups": "group", "people": "person", "calls": "call", "requests": "request", "tasks": "task"}


@dataclass(frozen=True)
class FixtureEntry:
    """One checked entry of a section: the fields it gave (already type-checked) and its YAML node."""

    node: Any
    values: Mapping[str, Any]


Fixture = dict[str, list[FixtureEntry]]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) > MAX_NUMBER * 1000:
        return f"a number of {len(str(abs(value)))} digits"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"'{value}'"
    return "a list" if is_sequence(value) else "a mapping" if is_mapping(value) else type(value).__name__


def read_fixture(document: Any, problems: Problems) -> Fixture:
    """The fixture document's entries by section, each field type-checked; mistakes go to ``problems``."""
    fixture: Fixture = {section: [] for section in SECTIONS}
    if document is None:
        return fixture
    if not is_mapping(document):
        problems.at(document, None, f"expected a mapping of {', '.join(SECTIONS)}; got {_describe(document)}")
        return fixture
    for section, entries in document.items():
        if section not in FIELDS:
            hint = did_you_mean(str(section), SECTIONS)
            problems.at_key(document, section, f"unknown top-level key '{section}'{hint}")
        elif entries is None:
            continue
        elif not is_sequence(entries):
            problems.at(document, section, f"'{section}' must be a list; got {_describe(entries)}")
        else:
            fixture[section] = _read_section(section, entries, problems)
    return fixture


def _read_section(section: str, entries: Any, problems: Problems) -> list[FixtureEntry]:
    what = _SINGULAR[section]
    schema = FIELDS[section]
    identity = "name" if section == "groups" else "email" if section == "people" else "number"
    seen: dict[Any, int] = {}
    result: list[FixtureEntry] = []
    for index, item in enumerate(entries):
        if not is_mapping(item):
            problems.at(entries, index, f"each entry of '{section}' must be a mapping; got {_describe(item)}")
            continue
        values: dict[str, Any] = {}
        for name, value in item.items():
            field = schema.get(name)
            if field is None:
                hint = did_you_mean(str(name), schema)
                problems.at_key(item, name, f"unknown field '{name}' in a {what}{hint}")
            elif _check_value(field, name, value, item, problems):
                values[name] = value
        missing = [name for name, field in schema.items() if field.required and name not in item]
        for name in missing:
            problems.at(item, None, f"{what} is missing required field '{name}'")
        if any(name not in values for name, field in schema.items() if field.required):
            continue
        key = values[identity].lower() if identity == "email" else values[identity]
        if key in seen:
            problems.at(
                item, identity, f"{what} {values[identity]} is listed twice (first at line {seen[key]})"
            )
            continue
        seen[key] = key_position(item, identity)[0]
        result.append(FixtureEntry(item, values))
    return result


def _check_value(field: FixtureField, name: str, value: Any, node: Any, problems: Problems) -> bool:
    """True when ``value`` suits ``field``; otherwise records why at the value's position."""
    got = _describe(value)
    kind = field.kind
    if kind in REFERENCE_KINDS and value is None:
        return True  # null clears a reference
    if kind in ("text", "name", "person", "group") and not isinstance(value, str):
        problems.at(node, name, f"'{name}' must be text; got {got}")
    elif kind in ("name", "person", "group") and not value.strip():
        problems.at(node, name, f"'{name}' must not be empty")
    elif kind == "email" and not (isinstance(value, str) and "@" in value.strip("@")):
        problems.at(node, name, f"'{name}' must be an email address; got {got}")
    elif kind == "flag" and not isinstance(value, bool):
        problems.at(node, name, f"'{name}' must be true or false; got {got}")
    elif kind in ("number", "request") and (not isinstance(value, int) or isinstance(value, bool)):
        problems.at(node, name, f"'{name}' must be a whole number; got {got}")
    elif kind in ("number", "request") and value < 1:
        problems.at(node, name, f"'{name}' must be 1 or more; got {got}")
    elif kind in ("number", "request") and value > MAX_NUMBER:
        problems.at(node, name, f"'{name}' must be at most {MAX_NUMBER}; got {got}")
    elif kind == "choice" and value not in field.choices:
        hint = did_you_mean(str(value), field.choices)
        problems.at(node, name, f"'{name}' must be one of {', '.join(field.choices)}; got {got}{hint}")
    elif kind == "group_list":
        return _check_group_list(name, value, node, problems)
    else:
        return True
    return False


def _check_group_list(name: str, value: Any, node: Any, problems: Problems) -> bool:
    if not is_sequence(value):
        problems.at(node, name, f"'{name}' must be a list of group names; got {_describe(value)}")
        return False
    bad = [index for index, item in enumerate(value) if not isinstance(item, str) or not item.strip()]
    for index in bad:
        problems.at(value, index, f"each of '{name}' must be a group name; got {_describe(value[index])}")
    return not bad


def _references(fixture: Fixture) -> list[tuple[str, Any, Any, Any]]:
    """Every reference in the file as (kind, node, key, value); group list items use (list, index)."""
    found: list[tuple[str, Any, Any, Any]] = []
    for section in ("calls", "requests", "tasks"):
        for entry in fixture[section]:
            for name, value in entry.values.items():
                kind = FIELDS[section][name].kind
                if kind in REFERENCE_KINDS and value is not None:
                    found.append((kind, entry.node, name, value))
    for entry in fixture["people"]:
        groups = entry.values.get("groups", [])
        found.extend(("group", groups, index, name) for index, name in enumerate(groups))
    return found


def _stored(session: Session, column: Any, values: list[Any]) -> set[Any]:
    """Which of ``values`` the database holds in ``column``."""
    return set(session.exec(select(column).where(column.in_(values))).all())


def check_references(session: Session, fixture: Fixture, problems: Problems) -> None:
    """Record every person, group or request named that is neither in the file nor in the database."""
    file_people = {entry.values["email"].lower() for entry in fixture["people"]}
    file_groups = {entry.values["name"] for entry in fixture["groups"]}
    file_requests = {entry.values["number"] for entry in fixture["requests"]}
    references = _references(fixture)

    def wanted(kind: str, known: set[Any]) -> list[Any]:
        named = {value.lower() if kind == "person" else value for k, _, _, value in references if k == kind}
        return sorted(named - known)

    people = file_people | _stored(session, func.lower(Person.email), wanted("person", file_people))
    groups = file_groups | _stored(session, col(Group.name), wanted("group", file_groups))
    requests = file_requests | _stored(session, col(Request.number), wanted("request", file_requests))
    for kind, node, key, value in references:
        if kind == "person" and value.lower() not in people:
            hint = did_you_mean(value.lower(), file_people)
            problems.at(
                node, key, f"unknown person '{value}': not in this file's people or the database{hint}"
            )
        elif kind == "group" and value not in groups:
            hint = did_you_mean(value, file_groups)
            problems.at(
                node, key, f"unknown group '{value}': not in this file's groups or the database{hint}"
            )
        elif kind == "request" and value not in requests:
            problems.at(node, key, f"unknown request {value}: not in this file's requests or the database")
