"""Row objects made without the ORM's constructor (engine/storage/rows.py), on SQLite and PostgreSQL.

A row built with ``build_row`` and written with ``insert_persistent``, or read with
``load_persistent``, must be indistinguishable from one the ORM constructed, flushed or loaded:
the same column values, persistent in the session, and changes made through it flushed as usual.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.storage.db import transaction
from engine.storage.models import Call, OutboxMessage, Person
from engine.storage.rows import build_row, insert_persistent, insert_transient, load_persistent

_VOLATILE = {"id", "created_at", "updated_at"}


def _columns(row: object) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in sa_inspect(type(row)).mapper.column_attrs}


def test_a_built_row_has_the_values_given_and_the_models_defaults_for_the_rest() -> None:
    built = build_row(Call, number=12, summary="printer")
    constructed = Call(number=12, summary="printer")
    want = {k: v for k, v in _columns(constructed).items() if k not in _VOLATILE}
    got = {k: v for k, v in _columns(built).items() if k not in _VOLATILE}
    assert got == want
    assert built.created_at is not None and built.updated_at is not None


def test_a_built_row_refuses_a_column_its_table_does_not_have() -> None:
    with pytest.raises(TypeError, match="Call has no column colour"):
        build_row(Call, number=1, colour="red")


def test_an_inserted_row_is_persistent_with_its_id_and_reads_back_as_the_orm_reads_it(engine: Engine) -> None:
    with transaction(engine) as session:
        person = insert_persistent(session, build_row(Person, email="ada@example.com", name="Ada"))
        assert person.id is not None
        assert sa_inspect(person).persistent
        assert session.get(Person, person.id) is person
        new_id = person.id
    with Session(engine) as session:
        stored = session.get(Person, new_id)
        assert stored is not None
        assert (stored.email, stored.name, stored.is_user, stored.is_analyst) == (
            "ada@example.com",
            "Ada",
            True,
            False,
        )


def test_a_row_inserted_transient_is_written_with_its_id_and_left_out_of_the_session(engine: Engine) -> None:
    values = {"type": "reply", "to_address": "ada@example.com", "subject": "Logged", "body": "Thanks"}
    values["message_id"] = "m1@mailgate.invalid"
    with transaction(engine) as session:
        row = insert_transient(session, build_row(OutboxMessage, **values))
        assert row.id is not None
        assert sa_inspect(row).transient and row not in session
        new_id = row.id
    with Session(engine) as session:
        stored = session.get(OutboxMessage, new_id)
        assert stored is not None
        assert {k: v for k, v in _columns(stored).items() if k not in _VOLATILE} == {
            k: v for k, v in _columns(row).items() if k not in _VOLATILE
        }


def test_a_change_made_through_an_inserted_row_is_flushed_on_commit(engine: Engine) -> None:
    with transaction(engine) as session:
        call = insert_persistent(session, build_row(Call, number=40, summary="first"))
        call.status = "closed"
        call_id = call.id
    with Session(engine) as session:
        stored = session.get(Call, call_id)
        assert stored is not None and stored.status == "closed"


def test_a_loaded_row_equals_the_one_the_orm_loads_and_its_changes_are_flushed(engine: Engine) -> None:
    with transaction(engine) as session:
        message = OutboxMessage(
            type="reply",
            account="helpdesk",
            to_address="a@example.com",
            subject="s",
            body="b",
            message_id="m1@x",
        )
        session.add(message)
        session.flush()
        message_id = message.id
    assert message_id is not None
    with Session(engine) as session:
        wanted = _columns(session.get(OutboxMessage, message_id))
    with transaction(engine) as session:
        loaded = load_persistent(session, OutboxMessage, message_id)
        assert loaded is not None
        assert _columns(loaded) == wanted
        assert sa_inspect(loaded).persistent
        loaded.subject = "changed"
    with Session(engine) as session:
        stored = session.get(OutboxMessage, message_id)
        assert stored is not None and stored.subject == "changed"


def test_loading_a_row_the_session_holds_returns_that_object(engine: Engine) -> None:
    with transaction(engine) as session:
        person = insert_persistent(session, build_row(Person, email="bob@example.com", name="Bob"))
        assert person.id is not None
        person.name = "Robert (unflushed)"
        assert load_persistent(session, Person, person.id) is person


def test_loading_a_missing_row_gives_none(engine: Engine) -> None:
    with transaction(engine) as session:
        assert load_persistent(session, Call, 987654) is None
