"""load_fixtures: the YAML contract, its error positions, upsert semantics, and views of what it loads."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from engine.errors import ConfigError
from engine.storage.db import transaction
from engine.storage.fixtures import FixtureCounts, load_fixtures
from engine.storage.models import (
    AttachedObject,
    Call,
    Forward,
    Group,
    GroupMember,
    HistoryEntry,
    Person,
    Request,
)
from engine.storage.views import call_view, request_view, task_view

FULL = """\
groups:
  - name: Service Desk
  - name: Network
people:
  - email: ann@example.com
    name: Ann User
  - email: bob@example.com
    name: Bob Analyst
    analyst: true
    groups: [Service Desk]
  - email: cat@example.com
    name: Cat Analyst
    user: false
    analyst: true
    take_over: true
    groups: [Service Desk, Network]
calls:
  - number: 41
    status: open
    user: ann@example.com
    assigned_analyst: bob@example.com
    assigned_group: Service Desk
    forwarded_by: bob@example.com
    forwarded_to: cat@example.com
    summary: Printer jams
    description: |
      The printer on floor 2 jams.
  - number: 43
    status: closed
    user: ANN@Example.com
requests:
  - number: 7
    status: open
    user: ann@example.com
    assigned_analyst: bob@example.com
    summary: New laptop
tasks:
  - number: 71
    request: 7
    sequence: 2
    assigned_analyst: bob@example.com
    summary: Install the laptop
  - number: 70
    kind: approval
    status: pending
    request: 7
    approver: cat@example.com
    approver_group: Network
"""


def write(tmp_path: Path, text: str, name: str = "fixture.yaml") -> Path:
    """Write a fixture file (dedented) and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row) for row in connection.execute(table.select().order_by(*table.primary_key.columns))
            ]
            for table in SQLModel.metadata.sorted_tables
        }


def is_empty(engine: Engine) -> bool:
    """True when no table holds a row (number sequences and the reply-token secret exist from the start)."""
    made_on_open = ("numbersequence", "replytokensecret")
    return not any(rows for name, rows in snapshot(engine).items() if name not in made_on_open)


# --- a full file ----------------------------------------------------------------------------------


def test_full_file_loads_and_reports_counts(engine: Engine, tmp_path: Path) -> None:
    counts = load_fixtures(engine, write(tmp_path, FULL))
    assert counts == FixtureCounts(groups=2, people=3, calls=2, requests=1, tasks=2, forwards_added=1)


def test_people_get_their_flags_defaults_and_groups(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    with Session(engine) as session:
        people = {p.email: p for p in session.exec(select(Person))}
        groups = {g.id: g.name for g in session.exec(select(Group))}
        members = session.exec(select(GroupMember)).all()
    ann, bob, cat = people["ann@example.com"], people["bob@example.com"], people["cat@example.com"]
    assert (ann.name, ann.is_user, ann.is_analyst, ann.take_over) == ("Ann User", True, False, False)
    assert (bob.is_user, bob.is_analyst, bob.take_over) == (True, True, False)
    assert (cat.is_user, cat.is_analyst, cat.take_over) == (False, True, True)
    membership = sorted((people_email(people, m.person_id), groups[m.group_id]) for m in members)
    assert membership == [
        ("bob@example.com", "Service Desk"),
        ("cat@example.com", "Network"),
        ("cat@example.com", "Service Desk"),
    ]


def people_email(people: dict[str, Person], person_id: int) -> str:
    """The email of the person with this id."""
    return next(email for email, person in people.items() if person.id == person_id)


def test_call_view_shows_a_loaded_call(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    with Session(engine) as session:
        view = call_view(session, 41)
        closed = call_view(session, 43)
        assert call_view(session, 42) is None
    assert view is not None
    assert view.pop("created_at") and view.pop("updated_at")  # when it was loaded
    assert view == {
        "number": 41,
        "status": "open",
        "user": "ann@example.com",
        "assigned_analyst": "bob@example.com",
        "logging_analyst": None,
        "last_analyst": None,
        "assigned_group": "Service Desk",
        "summary": "Printer jams",
        "description": "The printer on floor 2 jams.\n",
        "updated_by_email": False,
        "history": [],
        "attachments": [],
        "partition": None,
        "screen_set": None,
        "ipk_status": None,
        "ipk_stream": None,
    }
    assert closed is not None
    assert (closed["status"], closed["user"], closed["assigned_analyst"]) == (
        "closed",
        "ann@example.com",
        None,
    )


def test_request_view_lists_its_tasks_in_sequence_order(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    with Session(engine) as session:
        view = request_view(session, 7)
    assert view is not None
    assert view["user"] == "ann@example.com"
    assert view["assigned_analyst"] == "bob@example.com"
    assert view["summary"] == "New laptop"
    assert view["tasks"] == [
        {"number": 70, "kind": "approval", "status": "pending", "sequence": 1},
        {"number": 71, "kind": "task", "status": "open", "sequence": 2},
    ]


def test_task_view_shows_kind_request_approver_and_defaults(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    with Session(engine) as session:
        approval = task_view(session, 70)
        work = task_view(session, 71)
    assert approval is not None and work is not None
    assert {
        k: approval[k] for k in ("kind", "status", "request", "sequence", "approver", "approver_group")
    } == {
        "kind": "approval",
        "status": "pending",
        "request": 7,
        "sequence": 1,
        "approver": "cat@example.com",
        "approver_group": "Network",
    }
    assert (work["kind"], work["status"], work["approver"], work["assigned_analyst"]) == (
        "task",
        "open",
        None,
        "bob@example.com",
    )


def test_views_show_history_and_attachments_of_that_item_only(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    with transaction(engine) as session:
        call = session.exec(select(Call).where(Call.number == 41)).one()
        request = session.exec(select(Request).where(Request.number == 7)).one()
        assert call.id is not None and request.id is not None
        session.add(HistoryEntry(entity="call", entity_id=call.id, kind="logged", text="Logged by email"))
        session.add(
            HistoryEntry(
                entity="call", entity_id=call.id, kind="note", text="Rang Ann", security_profile="Internal"
            )
        )
        session.add(
            HistoryEntry(entity="task", entity_id=call.id, kind="note", text="a task's, not the call's")
        )
        session.add(
            HistoryEntry(entity="request", entity_id=request.id, kind="logged", text="Request logged")
        )
        session.add(
            AttachedObject(
                entity="call",
                entity_id=call.id,
                filename="jam.png",
                content_type="image/png",
                size=3,
                data=b"png",
            )
        )
    with Session(engine) as session:
        call_json = call_view(session, 41)
        request_json = request_view(session, 7)
    assert call_json is not None and request_json is not None
    json.dumps([call_json, request_json])
    for entry in [*call_json["history"], *call_json["attachments"], *request_json["history"]]:
        assert str(entry.pop("created_at")).endswith("+00:00")  # ISO 8601 in UTC
    not_from_mail = {"sender_authenticated": None, "sender_authentication": None}
    assert call_json["history"] == [
        {
            "kind": "logged",
            "text": "Logged by email",
            "security_profile": "Unspecified",
            **not_from_mail,
            "message_id": None,
        },
        {
            "kind": "note",
            "text": "Rang Ann",
            "security_profile": "Internal",
            **not_from_mail,
            "message_id": None,
        },
    ]
    assert call_json["attachments"] == [
        {"filename": "jam.png", "size": 3, "security_profile": "Unspecified", "content_type": "image/png"}
    ]
    assert request_json["history"] == [
        {
            "kind": "logged",
            "text": "Request logged",
            "security_profile": "Unspecified",
            **not_from_mail,
            "message_id": None,
        }
    ]
    assert request_json["attachments"] == []


# --- upsert ---------------------------------------------------------------------------------------


def test_loading_the_same_file_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    load_fixtures(engine, path)
    before = snapshot(engine)
    counts = load_fixtures(engine, path)
    assert snapshot(engine) == before
    assert counts.forwards_added == 0


def test_a_second_file_updates_given_fields_and_keeps_the_rest(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    load_fixtures(
        engine,
        write(
            tmp_path,
            """\
            calls:
              - number: 41
                status: closed
                assigned_analyst: null
            people:
              - email: BOB@example.com
                take_over: true
                groups: [Network]
            """,
            "update.yaml",
        ),
    )
    with Session(engine) as session:
        view = call_view(session, 41)
        assert view is not None
        assert (view["status"], view["assigned_analyst"], view["user"]) == ("closed", None, "ann@example.com")
        assert view["summary"] == "Printer jams"
        assert session.exec(select(Call).where(Call.number == 41)).one().closed_at is not None
        bobs = session.exec(select(Person).where(Person.email == "bob@example.com")).all()
        assert [(b.name, b.is_analyst, b.take_over) for b in bobs] == [("Bob Analyst", True, True)]
        network = session.exec(select(Group).where(Group.name == "Network")).one()
        bob_groups = session.exec(
            select(GroupMember.group_id).where(GroupMember.person_id == bobs[0].id)
        ).all()
        assert bob_groups == [network.id]
        assert len(session.exec(select(Call)).all()) == 2


def test_people_upsert_updates_the_first_person_with_that_email(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as session:
        session.add(Person(email="dup@example.com", name="first"))
        session.add(Person(email="dup@example.com", name="second"))
    load_fixtures(engine, write(tmp_path, "people:\n  - email: dup@example.com\n    name: renamed\n"))
    with Session(engine) as session:
        names = [p.name for p in session.exec(select(Person).order_by(col(Person.id)))]
    assert names == ["renamed", "second"]


def test_a_forward_is_recorded_once_per_pair(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    load_fixtures(engine, write(tmp_path, FULL))
    counts = load_fixtures(
        engine,
        write(
            tmp_path,
            "calls:\n  - number: 41\n    forwarded_by: cat@example.com\n    forwarded_to: bob@example.com\n",
            "back.yaml",
        ),
    )
    assert counts.forwards_added == 1
    with Session(engine) as session:
        people = {p.id: p.email for p in session.exec(select(Person))}
        pairs = [
            (people[f.forwarded_by_id], people[f.forwarded_to_id])
            for f in session.exec(select(Forward).order_by(col(Forward.id)))
        ]
    assert pairs == [("bob@example.com", "cat@example.com"), ("cat@example.com", "bob@example.com")]


def test_references_to_people_groups_and_requests_already_in_the_database_work(
    engine: Engine, tmp_path: Path
) -> None:
    with transaction(engine) as session:
        session.add(Person(email="Dan@Example.com", name="Dan", is_analyst=True))
        session.add(Group(name="Field"))
        session.add(Request(number=9))
    load_fixtures(
        engine,
        write(
            tmp_path,
            """\
            people:
              - email: eve@example.com
                groups: [Field]
            calls:
              - number: 100
                user: eve@example.com
                assigned_analyst: dan@example.com
                assigned_group: Field
            tasks:
              - number: 90
                request: 9
                approver: DAN@example.com
            """,
        ),
    )
    with Session(engine) as session:
        call = call_view(session, 100)
        task = task_view(session, 90)
    assert call is not None and task is not None
    assert (call["user"], call["assigned_analyst"], call["assigned_group"]) == (
        "eve@example.com",
        "Dan@Example.com",
        "Field",
    )
    assert (task["request"], task["approver"]) == (9, "Dan@Example.com")


def test_an_empty_file_loads_nothing(engine: Engine, tmp_path: Path) -> None:
    assert load_fixtures(engine, write(tmp_path, "# nothing yet\n")) == FixtureCounts()
    assert is_empty(engine)


# --- mistakes: each reported at its line and column, nothing written ------------------------------

MISTAKES = [
    pytest.param(
        """\
        groups:
          - name: Desk
        cals:
          - number: 1
        """,
        "3:1: unknown top-level key 'cals' (did you mean 'calls'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        """\
        calls:
          - number: 1
            staus: open
        """,
        "3:5: unknown field 'staus' in a call (did you mean 'status'?)",
        id="unknown-field",
    ),
    pytest.param(
        """\
        groups:
          - name: Desk
        calls:
          - number: forty-one
        """,
        "4:13: 'number' must be a whole number; got 'forty-one'",
        id="number-not-a-number",
    ),
    pytest.param(
        """\
        people:
          - email: ann@example.com
            analyst: "yes"
        """,
        "3:14: 'analyst' must be true or false; got 'yes'",
        id="flag-not-a-boolean",
    ),
    pytest.param(
        """\
        people:
          - email: ann@example.com
        calls: {number: 1}
        """,
        "3:8: 'calls' must be a list; got a mapping",
        id="section-not-a-list",
    ),
    pytest.param(
        """\
        calls:
          - number: 1
            status: opne
        """,
        "3:13: 'status' must be one of open, closed; got 'opne' (did you mean 'open'?)",
        id="bad-call-status",
    ),
    pytest.param(
        """\
        requests:
          - number: 7
        tasks:
          - number: 70
            request: 7
            kind: aproval
        """,
        "6:11: 'kind' must be one of task, approval, user_approval; got 'aproval' (did you mean 'approval'?)",
        id="bad-task-kind",
    ),
    pytest.param(
        """\
        people:
          - email: ann@example.com
        calls:
          - number: 1
            user: anne@example.com
        """,
        "5:11: unknown person 'anne@example.com': not in this file's people or the database"
        " (did you mean 'ann@example.com'?)",
        id="unknown-person",
    ),
    pytest.param(
        """\
        groups:
          - name: Desk
        people:
          - email: ann@example.com
            groups: [Desk, Netwrk]
        """,
        "5:20: unknown group 'Netwrk': not in this file's groups or the database",
        id="unknown-group-in-list",
    ),
    pytest.param(
        """\
        requests:
          - number: 7
        tasks:
          - number: 70
            request: 8
        """,
        "5:14: unknown request 8: not in this file's requests or the database",
        id="unknown-request",
    ),
    pytest.param(
        """\
        calls:
          - number: 41
          - number: 42
          - number: 41
        """,
        "4:13: call 41 is listed twice (first at line 2)",
        id="duplicate-call-number",
    ),
    pytest.param(
        """\
        people:
          - email: ann@example.com
          - email: Ann@Example.com
        """,
        "3:12: person Ann@Example.com is listed twice (first at line 2)",
        id="duplicate-email",
    ),
    pytest.param(
        """\
        groups:
          - name: Desk
        people:
          - name: Ann
        """,
        "4:5: person is missing required field 'email'",
        id="missing-email",
    ),
    pytest.param(
        """\
        groups:
          - name: Desk
        calls:
          - number: 1
            summary: [a
        """,
        "6:1: invalid YAML",
        id="yaml-syntax-error",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_a_mistake_is_reported_at_its_line_and_column_and_nothing_is_written(
    engine: Engine, tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_fixtures(engine, path)
    messages = [str(problem) for problem in caught.value.problems]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{path}:{expected}"), messages
    assert is_empty(engine)


def test_every_mistake_in_a_file_is_reported_together(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        people:
          - email: ann@example.com
            analyst: 1
        calls:
          - number: 41
            status: shut
            user: nobody@example.com
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_fixtures(engine, path)
    assert [(p.line, p.col) for p in caught.value.problems] == [(3, 14), (6, 13), (7, 11)]
    assert all(p.file == str(path) for p in caught.value.problems)
    assert is_empty(engine)


def test_a_mistake_in_a_second_file_leaves_the_first_load_untouched(engine: Engine, tmp_path: Path) -> None:
    load_fixtures(engine, write(tmp_path, FULL))
    before = snapshot(engine)
    bad = write(
        tmp_path, "calls:\n  - number: 41\n    status: closed\n  - number: 50\n    user: x@y.z\n", "bad.yaml"
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml:5:11: unknown person 'x@y\.z'"):
        load_fixtures(engine, bad)
    assert snapshot(engine) == before


def test_a_missing_file_is_a_config_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_fixtures(engine, tmp_path / "absent.yaml")
