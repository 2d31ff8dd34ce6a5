"""Small look-ups the pipeline and actions share: people, groups and items by their public keys."""

from __future__ import annotations

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.storage.direct import run_statement
from engine.storage.models import Call, Group, GroupMember, Person, Request, Task

ITEM_TABLES: dict[str, type[Call] | type[Request] | type[Task]] = {
    "call": Call,
    "request": Request,
    "task": Task,
}


_PERSON_ID_BY_EMAIL = (
    sa_select(col(Person.id))
    .where(func.lower(Person.email) == bindparam("email"))
    .order_by(col(Person.id))
    .limit(1)
)
_GROUP_ID_BY_NAME = sa_select(col(Group.id)).where(col(Group.name) == bindparam("name"))


def person_id(session: Session, email: str | None) -> int | None:
    """The id of the first person (lowest id) with this address, case-insensitively, or None."""
    if not email:
        return None
    found = run_statement(session, _PERSON_ID_BY_EMAIL, {"email": email.strip().lower()}).scalar()
    return int(found) if found is not None else None


def group_id(session: Session, name: str | None) -> int | None:
    """The id of the group with this name, or None."""
    if not name:
        return None
    found = run_statement(session, _GROUP_ID_BY_NAME, {"name": name}).scalar()
    return int(found) if found is not None else None


def find_person(session: Session, email: str | None) -> Person | None:
    """The first person (lowest id) whose address matches, case-insensitively."""
    if not email:
        return None
    stmt = select(Person).where(func.lower(Person.email) == email.strip().lower()).order_by(Person.id)  # type: ignore[arg-type]
    return session.exec(stmt).first()


def find_group(session: Session, name: str | None) -> Group | None:
    """The group with this name, or None."""
    if not name:
        return None
    return session.exec(select(Group).where(Group.name == name)).first()


def group_ids_of(session: Session, person: Person) -> set[int]:
    """Ids of the groups a person belongs to."""
    rows = session.exec(select(GroupMember.group_id).where(GroupMember.person_id == person.id))
    return set(rows)


def group_members(session: Session, group_id: int) -> list[Person]:
    """The people in a group, by id."""
    stmt = (
        select(Person)
        .join(GroupMember, GroupMember.person_id == Person.id)  # type: ignore[arg-type]
        .where(GroupMember.group_id == group_id)
        .order_by(Person.id)  # type: ignore[arg-type]
    )
    return list(session.exec(stmt))


def find_item(session: Session, entity: str, number: int) -> Call | Request | Task | None:
    """The call, request or task with this number, or None."""
    table = ITEM_TABLES[entity]
    if table is Call:
        return session.exec(select(Call).where(Call.number == number)).first()
    if table is Request:
        return session.exec(select(Request).where(Request.number == number)).first()
    return session.exec(select(Task).where(Task.number == number)).first()


def person_email(session: Session, person_id: int | None) -> str | None:
    """The address of a person by id, or None."""
    if person_id is None:
        return None
    person = session.get(Person, person_id)
    return person.email if person else None
