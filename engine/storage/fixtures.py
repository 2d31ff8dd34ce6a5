"""``mailgate db load FILE.yaml``: upsert people, groups, calls, requests and tasks from a YAML file.

The file's shape is a contract shared with outside tools. Top-level lists, all optional:

- ``groups``: ``{name}``
- ``people``: ``{email, name, user, analyst, take_over, groups}`` (``groups`` lists group names)
- ``calls``: ``{number, status: open|closed, user, assigned_analyst, assigned_group, forwarded_by,
  forwarded_to, summary, description}``
- ``requests``: ``{number, status: open|approved|rejected|closed, user, assigned_analyst, summary,
  description}``
- ``tasks``: ``{number, kind: task|approval|user_approval, status: open|pending|approved|rejected|closed,
  request, sequence, approver, approver_group, assigned_analyst, summary, description}``

People are referenced by email (case-insensitive), groups by name, requests by number; a reference
may name something defined in the same file or already in the database. The whole file is checked
first and every problem reported as ``file:line:col: message``; if there is any, nothing is written.

Loading is an upsert (people by email, groups by name, items by number): a field present in the file
is set, a field left out keeps its stored value (or takes its default on a new row), and ``null``
clears a reference. ``forwarded_by``/``forwarded_to`` add one Forward record per distinct pair.
Loading the same file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.errors import did_you_mean
from engine.storage.db import transaction
from engine.storage.models import Call, Forward, Group, GroupMember, Person, Request, Task, utcnow
from engine.yamlsource import Problems, is_mapping, is_sequence, key_position, load_yaml_file

SECTIONS = ("groups", "people", "calls", "requests", "tasks")


@dataclass(frozen=True)
class FixtureCounts:
    """How many entries of each kind a fixture file held, and how many Forward records it added."""

    groups: int = 0
    people: int = 0
    calls: int = 0
    requests: int = 0
    tasks: int = 0
    forwards_added: int = 0


@dataclass(frozen=True)
class _Field:
    """One field of a fixture entry: how its value is checked and which column (if any) it sets."""

    kind: str  # text | name | email | flag | number | choice | person | group | request | group_list
    column: str | None = None
    choices: tuple[str, ...] = ()
    required: bool = False


_REFERENCE_KINDS = ("person", "group", "request")
_NUMBER = _Field("number", required=True)
_SUMMARY = _Field("text", "summary")
_DESCRIPTION = _Field("text", "description")
_ANALYST = _Field("person", "assigned_analyst_id")

_SCHEMA: dict[str, dict[str, _Field]] = {
    "groups": {"name": _Field("name", required=True)},
    "people": {
        "email": _Field("email", required=True),
        "name": _Field("text", "name"),
        "user": _Field("flag", "is_user"),
        "analyst": _Field("flag", "is_analyst"),
        "take_over": _Field("flag", "take_over"),
        "groups": _Field("group_list"),
    },
    "calls": {
        "number": _NUMBER,
        "status": _Field("choice", "status", ("open", "closed")),
        "user": _Field("person", "user_id"),
        "assigned_analyst": _ANALYST,
        "assigned_group": _Field("group", "assigned_group_id"),
        "forwarded_by": _Field("person"),
        "forwarded_to": _Field("person"),
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
    "requests": {
        "number": _NUMBER,
        "status": _Field("choice", "status", ("open", "approved", "rejected", "closed")),
        "user": _Field("person", "user_id"),
        "assigned_analyst": _ANALYST,
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
    "tasks": {
        "number": _NUMBER,
        "kind": _Field("choice", "kind", ("task", "approval", "user_approval")),
        "status": _Field("choice", "status", ("open", "pending", "approved", "rejected", "closed")),
        "request": _Field("request", "request_id"),
        "sequence": _Field("number", "sequence"),
        "approver": _Field("person", "approver_person_id"),
        "approver_group": _Field("group", "approver_group_id"),
        "assigned_analyst": _ANALYST,
        "summary": _SUMMARY,
        "description": _DESCRIPTION,
    },
}

_SINGULAR = {"groups": "group", "people": "person", "calls": "call", "requests": "request", "tasks": "task"}


@dataclass(frozen=True)
class _Entry:
    """One checked entry of a section: the fields it gave (already type-checked) and its YAML node."""

    node: Any
    values: Mapping[str, Any]


_Fixture = dict[str, list[_Entry]]


def load_fixtures(engine: Engine, path: Path) -> FixtureCounts:
    """Check a fixture file completely, then upsert it in one transaction (ConfigError: nothing written)."""
    document = load_yaml_file(path)
    problems = Problems(str(path))
    fixture = _read_document(document, problems)
    with transaction(engine) as session:
        _check_references(session, fixture, problems)
        problems.raise_if_any()
        return _apply(session, fixture)


# --- reading and checking -----------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"'{value}'"
    return "a list" if is_sequence(value) else "a mapping" if is_mapping(value) else type(value).__name__


def _read_document(document: Any, problems: Problems) -> _Fixture:
    fixture: _Fixture = {section: [] for section in SECTIONS}
    if document is None:
        return fixture
    if not is_mapping(document):
        problems.at(document, None, f"expected a mapping of {', '.join(SECTIONS)}; got {_describe(document)}")
        return fixture
    for section, entries in document.items():
        if section not in _SCHEMA:
            hint = did_you_mean(str(section), SECTIONS)
            problems.at_key(document, section, f"unknown top-level key '{section}'{hint}")
        elif entries is None:
            continue
        elif not is_sequence(entries):
            problems.at(document, section, f"'{section}' must be a list; got {_describe(entries)}")
        else:
            fixture[section] = _read_section(section, entries, problems)
    return fixture


def _read_section(section: str, entries: Any, problems: Problems) -> list[_Entry]:
    what = _SINGULAR[section]
    schema = _SCHEMA[section]
    identity = "name" if section == "groups" else "email" if section == "people" else "number"
    seen: dict[Any, int] = {}
    result: list[_Entry] = []
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
        result.append(_Entry(item, values))
    return result


def _check_value(field: _Field, name: str, value: Any, node: Any, problems: Problems) -> bool:
    """True when ``value`` suits ``field``; otherwise records why at the value's position."""
    got = _describe(value)
    kind = field.kind
    if kind in _REFERENCE_KINDS and value is None:
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
        problems.at(node, name, f"'{name}' must be 1 or more; got {value}")
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


def _references(fixture: _Fixture) -> list[tuple[str, Any, Any, Any]]:
    """Every reference in the file as (kind, node, key, value); group list items use (list, index)."""
    found: list[tuple[str, Any, Any, Any]] = []
    for section in ("calls", "requests", "tasks"):
        for entry in fixture[section]:
            for name, value in entry.values.items():
                kind = _SCHEMA[section][name].kind
                if kind in _REFERENCE_KINDS and value is not None:
                    found.append((kind, entry.node, name, value))
    for entry in fixture["people"]:
        groups = entry.values.get("groups", [])
        found.extend(("group", groups, index, name) for index, name in enumerate(groups))
    return found


def _stored(session: Session, column: Any, values: list[Any]) -> set[Any]:
    """Which of ``values`` the database holds in ``column``."""
    return set(session.exec(select(column).where(column.in_(values))).all())


def _check_references(session: Session, fixture: _Fixture, problems: Problems) -> None:
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


# --- writing ------------------------------------------------------------------------------------


_Row = TypeVar("_Row", Call, Request, Task)


def _assign(row: Any, column: str, value: Any) -> bool:
    """Set ``row.column`` to ``value``; True if that changed it."""
    if getattr(row, column) == value:
        return False
    setattr(row, column, value)
    return True


def _set_columns(row: Any, section: str, entry: _Entry, resolve: _Resolver) -> bool:
    """Set the columns of every field the entry gave (references resolved to ids); True if any changed."""
    changed = False
    for name, field in _SCHEMA[section].items():
        if field.column is None or name not in entry.values:
            continue
        value = entry.values[name]
        if field.kind in _REFERENCE_KINDS:
            value = resolve.id_of(field.kind, value)
        changed = _assign(row, field.column, value) or changed
    return changed


class _Resolver:
    """Turns references (emails, group names, request numbers) into row ids, remembering each."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.people: dict[str, Person] = {}
        self.groups: dict[str, Group] = {}

    def person(self, email: str) -> Person | None:
        """The first stored person with this email (case-insensitive)."""
        key = email.lower()
        if key not in self.people:
            statement = select(Person).where(func.lower(Person.email) == key).order_by(col(Person.id))
            found = self.session.exec(statement).first()
            if found is None:
                return None
            self.people[key] = found
        return self.people[key]

    def group(self, name: str) -> Group | None:
        """The stored group with this name."""
        if name not in self.groups:
            found = self.session.exec(select(Group).where(Group.name == name)).first()
            if found is None:
                return None
            self.groups[name] = found
        return self.groups[name]

    def id_of(self, kind: str, value: Any) -> int | None:
        """Row id for a checked reference (``None`` stays ``None``)."""
        if value is None:
            return None
        row: Person | Group | Request | None
        if kind == "person":
            row = self.person(value)
        elif kind == "group":
            row = self.group(value)
        else:
            row = self.session.exec(select(Request).where(Request.number == value)).first()
        assert row is not None, f"{kind} {value!r} was checked but is missing"
        return row.id


def _apply(session: Session, fixture: _Fixture) -> FixtureCounts:
    resolve = _Resolver(session)
    for entry in fixture["groups"]:
        if resolve.group(entry.values["name"]) is None:
            session.add(Group(name=entry.values["name"]))
            session.flush()
    for entry in fixture["people"]:
        _upsert_person(session, resolve, entry)
    session.flush()
    _upsert_numbered(session, resolve, Request, "requests", fixture["requests"])
    calls = _upsert_numbered(session, resolve, Call, "calls", fixture["calls"], _closed_at)
    forwards_added = sum(_add_forward(session, resolve, call, entry) for call, entry in calls)
    _upsert_numbered(session, resolve, Task, "tasks", fixture["tasks"])
    session.flush()
    return FixtureCounts(
        groups=len(fixture["groups"]),
        people=len(fixture["people"]),
        calls=len(fixture["calls"]),
        requests=len(fixture["requests"]),
        tasks=len(fixture["tasks"]),
        forwards_added=forwards_added,
    )


def _upsert_person(session: Session, resolve: _Resolver, entry: _Entry) -> None:
    email = entry.values["email"]
    person = resolve.person(email)
    if person is None:
        person = Person(email=email)
        session.add(person)
        session.flush()
        resolve.people[email.lower()] = person
    _set_columns(person, "people", entry, resolve)
    if "groups" not in entry.values:
        return
    wanted = {resolve.id_of("group", name) for name in entry.values["groups"]}
    members = session.exec(select(GroupMember).where(GroupMember.person_id == person.id)).all()
    for member in members:
        if member.group_id not in wanted:
            session.delete(member)
    have = {member.group_id for member in members}
    for group_id in sorted(g for g in wanted if g is not None and g not in have):
        assert person.id is not None
        session.add(GroupMember(group_id=group_id, person_id=person.id))


def _closed_at(call: Call) -> None:
    if call.status == "closed" and call.closed_at is None:
        call.closed_at = utcnow()
    elif call.status != "closed":
        call.closed_at = None


def _upsert_numbered(
    session: Session,
    resolve: _Resolver,
    model: type[_Row],
    section: str,
    entries: list[_Entry],
    after_change: Callable[[_Row], None] | None = None,
) -> list[tuple[_Row, _Entry]]:
    rows: list[tuple[_Row, _Entry]] = []
    for entry in entries:
        number = entry.values["number"]
        row = session.exec(select(model).where(model.number == number)).first()
        changed = row is None
        if row is None:
            row = model(number=number)
            session.add(row)
        changed = _set_columns(row, section, entry, resolve) or changed
        if changed:
            row.updated_at = utcnow()
            if after_change is not None:
                after_change(row)
        session.flush()
        rows.append((row, entry))
    return rows


def _add_forward(session: Session, resolve: _Resolver, call: Call, entry: _Entry) -> bool:
    by_id = resolve.id_of("person", entry.values.get("forwarded_by"))
    to_id = resolve.id_of("person", entry.values.get("forwarded_to"))
    if by_id is None and to_id is None:
        return False
    assert call.id is not None
    existing = session.exec(
        select(Forward).where(
            Forward.call_id == call.id, Forward.forwarded_by_id == by_id, Forward.forwarded_to_id == to_id
        )
    ).first()
    if existing is not None:
        return False
    session.add(Forward(call_id=call.id, forwarded_by_id=by_id, forwarded_to_id=to_id))
    return True
