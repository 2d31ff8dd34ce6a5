"""Small look-ups the pipeline and actions share: people, groups and items by their public keys."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.storage.direct import pipelined_batch, run_statement, run_statement_on
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
_PEOPLE_BY_EMAIL = (
    sa_select(*Person.__table__.columns, func.lower(Person.email))  # type: ignore[attr-defined]
    .where(func.lower(Person.email).in_(bindparam("emails", expanding=True)))
    .order_by(col(Person.id))
)
_PERSON_COLUMNS = tuple(column.name for column in Person.__table__.columns)  # type: ignore[attr-defined]
SenderFacts = namedtuple("SenderFacts", ["id", "is_user", "is_analyst", "take_over"])
UNKNOWN: Any = object()  # not read ahead: ask the database
_GROUP_ID_BY_NAME = sa_select(col(Group.id)).where(col(Group.name) == bindparam("name"))


def person_id(session: Session, email: str | None) -> int | None:
    """The id of the first person (lowest id) with this address, case-insensitively, or None."""
    if not email:
        return None
    found = run_statement(session, _PERSON_ID_BY_EMAIL, {"email": email.strip().lower()}).scalar()
    return int(found) if found is not None else None


def look_up_senders(addresses: Iterable[str]) -> None:
    """In a batch in pipeline mode (PostgreSQL), read the people of these sender addresses at once.

    ``known_sender`` then answers for them, and ``engine.storage.rows.load_persistent`` makes
    their rows, without a round trip each, until the batch writes a person (then they are read
    again). Elsewhere this does nothing.
    """
    batch = pipelined_batch()
    wanted = sorted({address.lower() for address in addresses})
    if batch is None or not wanted:
        return
    found = run_statement_on(batch.connection, _PEOPLE_BY_EMAIL, {"emails": wanted})
    width = len(_PERSON_COLUMNS)
    for row in found.rows:
        values = tuple(row[:width])
        lowered = row[width]
        if lowered not in batch.senders:  # the lowest id, as the one-by-one look-up takes
            batch.senders[lowered] = values[0]
            batch.rows[("person", values[0])] = values
    for address in wanted:
        batch.senders.setdefault(address, None)


def known_sender(address: str) -> Any:
    """The facts row (id, is_user, is_analyst, take_over) of the person read ahead for this address,
    None for nobody, or ``UNKNOWN`` when it was not read ahead."""
    batch = pipelined_batch()
    if batch is None or not batch.senders:
        return UNKNOWN
    person = batch.senders.get(address, UNKNOWN)
    if person is None or person is UNKNOWN:
        return person
    values = batch.rows.get(("person", person))
    if values is None:  # written since it was read
        return UNKNOWN
    row = dict(zip(_PERSON_COLUMNS, values, strict=True))
    return SenderFacts(row["id"], row["is_user"], row["is_analyst"], row["take_over"])


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
