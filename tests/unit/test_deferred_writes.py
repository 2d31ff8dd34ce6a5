"""What an optimistic batch holds back, and in what order it sends it (engine.storage.deferred).

The statements are recorded instead of sent; tests/pipeline/test_held_writes.py runs the same on
a real PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, LargeBinary, MetaData, String, Table, func, insert, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from engine.storage import deferred
from engine.storage.deferred import DeferredWrites, HeldInsert, held_insert

DIALECT = postgresql.psycopg.dialect()  # type: ignore[attr-defined,no-untyped-call]
TABLES = MetaData()
Person = Table("person", TABLES, Column("id", Integer, primary_key=True), Column("email", String))
Call = Table(
    "call",
    TABLES,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("person.id")),
    Column("data", LargeBinary),
)


def _form(statement: Any, keys: list[str]) -> HeldInsert | None:
    sql = statement.compile(dialect=DIALECT, column_keys=keys).string
    return held_insert(statement, sql, DIALECT)


def test_a_plain_insert_is_sent_as_one_unnest_of_an_array_per_column() -> None:
    form = _form(insert(Call), ["id", "user_id", "data"])
    assert form is not None
    assert form.sql == (
        "INSERT INTO call (id, user_id, data) SELECT * FROM unnest("
        "%(id)b::INTEGER[], %(user_id)b::INTEGER[], %(data)b::BYTEA[])"
    )
    assert form.binds == ("id", "user_id", "data")


def test_an_insert_whose_result_or_conflict_matters_is_never_held() -> None:
    returning = insert(Person).returning(Person.c.id)
    conflict = pg_insert(Person).on_conflict_do_nothing()
    computed = insert(Person).values(email=func.lower("A@EXAMPLE.COM"))
    assert _form(returning, ["email"]) is None
    assert _form(conflict, ["email"]) is None
    assert _form(computed, ["email"]) is None
    assert _form(update(Person).values(email="x"), ["email"]) is None


class Recorder:
    """Stands for the batch's cursor: what would have been sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def __call__(self, sql: str, params: Any) -> None:
        self.sent.append((sql, params))


ORDER = {"person": 0, "call": 1}
PERSON = _form(insert(Person), ["id", "email"])
CALL = _form(insert(Call), ["id", "user_id", "data"])


def _writes() -> tuple[DeferredWrites, Recorder]:
    recorder = Recorder()
    return DeferredWrites(recorder, ORDER), recorder


def _kinds(recorder: Recorder) -> list[str]:
    return [
        sql.split(" (")[0] if "unnest" not in sql else "many " + sql.split(" (")[0]
        for sql, _ in recorder.sent
    ]


def test_held_rows_go_parents_first_a_table_at_a_time_and_updates_last() -> None:
    writes, recorder = _writes()
    writes.hold(CALL, "INSERT INTO call (one)", {"id": 1, "user_id": 10, "data": b"1"})
    writes.hold(None, "UPDATE call (one)", {"id": 1})
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 10, "email": "a@x"})
    writes.hold(CALL, "INSERT INTO call (one)", {"id": 2, "user_id": 10, "data": None})
    writes.send(writes=False)
    assert _kinds(recorder) == ["INSERT INTO person", "many INSERT INTO call", "UPDATE call"]
    assert recorder.sent[1][1] == {"id": [1, 2], "user_id": [10, 10], "data": [b"1", None]}
    assert writes.held == []


def test_a_savepoint_is_sent_only_when_its_own_rows_or_a_write_follow() -> None:
    writes, recorder = _writes()
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 1, "email": "a@x"})
    writes.begin("sa_1")
    writes.send(writes=False)  # a read: the earlier row goes, the savepoint need not
    assert _kinds(recorder) == ["INSERT INTO person"]
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 2, "email": "b@x"})
    writes.send(writes=False)  # now a row of its own goes: after the savepoint
    assert _kinds(recorder)[1:] == ["SAVEPOINT sa_1", "INSERT INTO person"]
    assert writes.rollback("sa_1") is True  # it was sent: the server must roll back too


def test_a_savepoint_never_sent_is_rolled_back_by_forgetting_its_rows() -> None:
    writes, recorder = _writes()
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 1, "email": "a@x"})
    writes.begin("sa_1")
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 2, "email": "b@x"})
    assert writes.rollback("sa_1") is False
    writes.send(writes=False)
    assert recorder.sent == [("INSERT INTO person (one)", {"id": 1, "email": "a@x"})]


def test_a_released_savepoints_rows_stay_held_for_the_batch() -> None:
    writes, recorder = _writes()
    writes.begin("sa_1")
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 1, "email": "a@x"})
    writes.release("sa_1")
    writes.begin("sa_2")
    writes.hold(PERSON, "INSERT INTO person (one)", {"id": 2, "email": "b@x"})
    writes.send(writes=True)  # a write of sa_2's follows: sa_1's row, then sa_2, then its row
    assert _kinds(recorder) == ["INSERT INTO person", "SAVEPOINT sa_2", "INSERT INTO person"]


def test_held_rows_go_at_once_when_their_values_pass_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deferred, "HELD_BYTES_AT_MOST", 1000)
    writes, recorder = _writes()
    writes.hold(CALL, "INSERT INTO call (one)", {"id": 1, "user_id": 10, "data": b"x" * 600})
    assert recorder.sent == []
    writes.hold(CALL, "INSERT INTO call (one)", {"id": 2, "user_id": 10, "data": b"y" * 600})
    assert _kinds(recorder) == ["many INSERT INTO call"]  # a batch of large mails holds no more
    assert writes.held == [] and writes.held_bytes == 0
