"""On PostgreSQL a batch takes its new calls' numbers several at a time (engine.storage.numbers.NumbersApart).

That must not cost gaps in the numbers: what a batch took and did not use goes back to the
sequence, or, when another process took numbers since (or the batch failed), to this process's
next batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_desk import Desk, build_desk, make_mail
from sqlalchemy import text
from sqlmodel import Session

from engine.storage.db import batch_transaction
from engine.storage.numbers import NUMBERS_TAKEN_AT_ONCE, next_number

pytestmark = pytest.mark.postgres


@pytest.fixture
def desk(tmp_path: Path, pg_url: str) -> Iterator[Desk]:
    """The default pack on a fresh PostgreSQL database."""
    built = build_desk(tmp_path, database=pg_url)
    yield built
    built.runtime.close()


def _sequence(desk: Desk) -> int:
    with desk.runtime.engine.connect() as connection:
        return int(
            connection.execute(text("SELECT next_value FROM numbersequence WHERE name = 'call'")).scalar_one()
        )


def _log(desk: Desk, *subjects: str) -> list[int]:
    numbers = []
    with batch_transaction(desk.runtime.engine, optimistic=True):
        for subject in subjects:
            result = desk.process(
                make_mail(subject, "ada@example.com", message_id=f"<{subject}@example.com>")
            )
            assert result.outcome == "logged" and result.number is not None
            numbers.append(result.number)
    return numbers


def test_a_batch_takes_its_new_numbers_several_at_a_time(desk: Desk) -> None:
    with batch_transaction(desk.runtime.engine, optimistic=True):
        first = desk.process(make_mail("one", "ada@example.com", message_id="<one@example.com>")).number
        assert first is not None
        assert _sequence(desk) == first + NUMBERS_TAKEN_AT_ONCE  # committed apart, at once
        second = desk.process(make_mail("two", "ada@example.com", message_id="<two@example.com>")).number
        assert second == first + 1
        assert _sequence(desk) == first + NUMBERS_TAKEN_AT_ONCE  # not asked again


def test_the_numbers_a_batch_took_and_did_not_use_are_given_back(desk: Desk) -> None:
    first = _log(desk, "one", "two", "three")
    assert first == [first[0], first[0] + 1, first[0] + 2]
    assert _sequence(desk) == first[-1] + 1
    assert _log(desk, "four") == [first[-1] + 1]


def _taken_by_another_process(desk: Desk) -> int:
    """A number taken outside the batch, as another process would (a thread has no batch in its context)."""
    taken: list[int] = []

    def take() -> None:
        with Session(desk.runtime.engine) as session:
            taken.append(next_number(session, "call"))

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return taken[0]


def test_numbers_a_batch_took_that_another_process_passed_go_to_the_next_batch(desk: Desk) -> None:
    with batch_transaction(desk.runtime.engine, optimistic=True):
        logged = desk.process(make_mail("one", "ada@example.com", message_id="<one@example.com>")).number
        assert logged is not None
        taken_elsewhere = _taken_by_another_process(desk)
    assert taken_elsewhere == logged + NUMBERS_TAKEN_AT_ONCE  # the rest of the batch's stay its process's
    assert _log(desk, "two", "three") == [logged + 1, logged + 2]


def test_the_numbers_a_failed_batch_did_not_use_go_to_the_next_batch(desk: Desk) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), batch_transaction(desk.runtime.engine, optimistic=True):
        lost = desk.process(make_mail("one", "ada@example.com", message_id="<one@example.com>")).number
        raise Boom
    assert lost is not None
    assert _log(desk, "one again") == [lost + 1]  # the one its rolled-back call had is a gap, as ever


def test_a_batchs_block_of_numbers_is_flushed_to_the_servers_disk_before_it_is_used(desk: Desk) -> None:
    """A process may keep numbers beyond its batch: their reservation must survive a server crash."""
    with desk.runtime.engine.connect() as connection:
        before = connection.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar_one()
    with batch_transaction(desk.runtime.engine, optimistic=True):
        desk.process(make_mail("one", "ada@example.com", message_id="<one@example.com>"))
        with desk.runtime.engine.connect() as connection:
            flushed = connection.execute(
                text("SELECT pg_current_wal_flush_lsn() > CAST(:before AS pg_lsn)"), {"before": before}
            ).scalar_one()
        assert flushed  # the batch has not committed yet: only the block's own commit flushed the log
