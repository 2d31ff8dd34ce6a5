"""How actions write calls, requests, tasks, people, history and attachments: one way, one place.

Actions never build SQL themselves; they reach the database through the ``ItemStore`` on their
context (``ActionContext.store``), which works inside the message's one transaction and never
commits.

Rows are written with plain, prebuilt statements rather than through the ORM's unit of work (its
flush costs several times the INSERT itself). History and attachments are never read back in the
same message; a new person or call is then attached to the session as if it had been loaded, and a
changed column is mirrored into the item's object without marking it dirty, so the objects the
actions see stay true and nothing is written twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from engine.storage.blobs import insert_with_large_value
from engine.storage.deferred import DEFERRABLE
from engine.storage.direct import pipelined_batch, run_statement
from engine.storage.models import AttachedObject, Call, Group, HistoryEntry, Person, Request, Task
from engine.storage.numbers import next_number
from engine.storage.queries import find_group, group_id, person_id
from engine.storage.rows import build_row, insert_persistent

Item = Call | Request | Task
Row = TypeVar("Row", bound=SQLModel)

_INSERT_HISTORY = insert(HistoryEntry)
_SET_COLUMNS: dict[tuple[type[SQLModel], tuple[str, ...]], Any] = {}


class ItemStore:
    """The writes and lookups actions make, on one message's session.

    Contract: every method works inside the caller's transaction and never commits or rolls back;
    an object it returns or changes stays true to the database (a column written by statement is
    mirrored into the object); writing the same change twice is a no-op (``set_columns`` writes only
    what differs).
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def set_columns(self, item: SQLModel, **values: Any) -> None:
        """UPDATE the item's columns to ``values`` (those that differ) and mirror them into its object.

        The object is not marked dirty, so no flush writes it again; a change made to another column
        through the object is still flushed as usual.
        """
        changed = {name: value for name, value in values.items() if getattr(item, name) != value}
        if not changed:
            return
        table = type(item)
        key = (table, tuple(sorted(changed)))
        statement = _SET_COLUMNS.get(key)
        if statement is None:
            statement = (
                update(table)
                .where(col(table.id) == bindparam("item_id"))  # type: ignore[attr-defined]
                .values({name: bindparam(f"new_{name}") for name in key[1]})
                .execution_options(**DEFERRABLE)  # one row by its id, its outcome never read
            )
            _SET_COLUMNS[key] = statement
        params = {f"new_{name}": value for name, value in changed.items()}
        run_statement(self.session, statement, {"item_id": item.id, **params})  # type: ignore[attr-defined]
        batch = pipelined_batch()
        if batch is not None and batch.rows:
            batch.forget_row(str(table.__tablename__), item.id)  # type: ignore[attr-defined]
        for name, value in changed.items():
            set_committed_value(item, name, value)

    def touch(self, item: Item, now: datetime, **values: Any) -> None:
        """Set the item's ``updated_at`` to ``now`` (and other columns), written at once."""
        if self.session.is_modified(item):  # pending changes through the object: the flush writes all
            item.updated_at = now
            for name, value in values.items():
                setattr(item, name, value)
            self.session.add(item)
            return
        self.set_columns(item, updated_at=now, **values)

    def add_history(
        self,
        entity: str,
        item: Item,
        kind: str,
        text: str,
        *,
        now: datetime,
        message_key: str,
        author_id: int | None = None,
        sender_authentication: str | None = None,
        security_profile: str = "Unspecified",
    ) -> None:
        """Append a history entry to the item (linked to the mail's ledger key) and touch the item."""
        assert item.id is not None
        run_statement(
            self.session,
            _INSERT_HISTORY,
            {
                "entity": entity,
                "entity_id": item.id,
                "kind": kind,
                "text": text,
                "security_profile": security_profile,
                "author_id": author_id,
                "created_at": now,
                "sender_authentication": sender_authentication,
                "message_id": message_key,  # the mail's ledger key: its kept original (storage/originals.py)
            },
        )
        self.touch(item, now)

    def attach_file(
        self,
        entity: str,
        item: Item,
        *,
        filename: str,
        content_type: str,
        data: bytes,
        security_profile: str,
        now: datetime,
    ) -> None:
        """Store one attachment on the item (a big one is written in pieces: engine/storage/blobs.py)."""
        assert item.id is not None
        insert_with_large_value(
            self.session,
            AttachedObject,
            {
                "entity": entity,
                "entity_id": item.id,
                "filename": filename,
                "content_type": content_type,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "data": data,
                "security_profile": security_profile,
                "created_at": now,
            },
            "data",
        )

    def add_user(self, email: str, name: str | None) -> Person:
        """A new person (a user, not an analyst) for an unknown sender."""
        person = build_row(Person, email=email, name=name, is_user=True, is_analyst=False)
        return insert_persistent(self.session, person)

    def add_call(self, **values: Any) -> Call:
        """A new call with the next call number and these columns."""
        call = build_row(Call, number=next_number(self.session, "call"), **values)
        return insert_persistent(self.session, call)

    def person_id(self, email: str | None) -> int | None:
        """The id of the person with this email address, if any."""
        return person_id(self.session, email)

    def group_id(self, name: str | None) -> int | None:
        """The id of the group with this name, if any."""
        return group_id(self.session, name)

    def find_group(self, name: str | None) -> Group | None:
        """The group with this name, if any."""
        return find_group(self.session, name)

    def get(self, table: type[Row], row_id: int) -> Row | None:
        """The row of ``table`` with this id, if any."""
        return self.session.get(table, row_id)

    def other_tasks_of_request(self, task: Task) -> list[Task]:
        """The request's other tasks, in workflow order (sequence, then number)."""
        statement = (
            select(Task)
            .where(col(Task.request_id) == task.request_id, col(Task.id) != task.id)
            .order_by(col(Task.sequence), col(Task.number))
        )
        return list(self.session.exec(statement))
