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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.config.yaml_source import Problems, load_yaml_file
from engine.storage.db import transaction
from engine.storage.fixture_checks import (
    FIELDS,
    REFERENCE_KINDS,
    SECTIONS,
    Fixture,
    FixtureEntry,
    check_references,
    read_fixture,
)
from engine.storage.models import Call, Forward, Group, GroupMember, Person, Request, Task, utcnow

__all__ = ["SECTIONS", "FixtureCounts", "load_fixtures"]


@dataclass(frozen=True)
class FixtureCounts:
    """How many entries of each kind a fixture file held, and how many Forward records it added."""

    groups: int = 0
    people: int = 0
    calls: int = 0
    requests: int = 0
    tasks: int = 0
    forwards_added: int = 0

    def describe(self) -> str:
        """``2 groups, 4 people, 1 call, 0 requests, 3 tasks (each added or updated); 1 forward added``."""
        kinds = (
            (self.groups, "group", "groups"),
            (self.people, "person", "people"),
            (self.calls, "call", "calls"),
            (self.requests, "request", "requests"),
            (self.tasks, "task", "tasks"),
        )
        listed = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in kinds)
        forwards = f"{self.forwards_added} forward{'' if self.forwards_added == 1 else 's'} added"
        return f"{listed} (each added or updated); {forwards}"


def load_fixtures(engine: Engine, path: Path) -> FixtureCounts:
    """Check a fixture file completely, then upsert it in one transaction (ConfigError: nothing written)."""
    document = load_yaml_file(path)
    problems = Problems(str(path))
    fixture = read_fixture(document, problems)
    with transaction(engine) as session:
        check_references(session, fixture, problems)
        problems.raise_if_any()
        return _apply(session, fixture)


# --- writing (the file was checked by engine.storage.fixture_checks) -------------------------------


_Row = TypeVar("_Row", Call, Request, Task)


def _assign(row: Any, column: str, value: Any) -> bool:
    """Set ``row.column`` to ``value``; True if that changed it."""
    if getattr(row, column) == value:
        return False
    setattr(row, column, value)
    return True


def _set_columns(row: Any, section: str, entry: FixtureEntry, resolve: _Resolver) -> bool:
    """Set the columns of every field the entry gave (references resolved to ids); True if any changed."""
    changed = False
    for name, field in FIELDS[section].items():
        if field.column is None or name not in entry.values:
            continue
        value = entry.values[name]
        if field.kind in REFERENCE_KINDS:
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


def _apply(session: Session, fixture: Fixture) -> FixtureCounts:
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


def _upsert_person(session: Session, resolve: _Resolver, entry: FixtureEntry) -> None:
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
    entries: list[FixtureEntry],
    after_change: Callable[[_Row], None] | None = None,
) -> list[tuple[_Row, FixtureEntry]]:
    rows: list[tuple[_Row, FixtureEntry]] = []
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


def _add_forward(session: Session, resolve: _Resolver, call: Call, entry: FixtureEntry) -> bool:
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
