"""A batch whose transaction the server aborted commits nothing, and says so.

On PostgreSQL, COMMIT in an aborted transaction rolls back without an error, and psycopg reports
none either. A batch waits for its writes only at reads, at savepoints' ends and at the commit; if a
write's failure were ever swallowed on the way (a savepoint's rollback meets it, say), the commit
would "succeed" with nothing kept, and the batch's mails would be acknowledged (deleted). The batch
checks the transaction's state before it commits.
"""

from __future__ import annotations

from contextlib import suppress

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from engine.storage.db import BatchNotSettled, batch_transaction, open_database, transaction
from engine.storage.direct import pipelined_batch, run_statement
from engine.storage.models import Call

CALL = {"number": 7, "status": "open", "summary": "Printer", "description": ""}


class OwnFailure(Exception):
    """A message's own failure (an action that raised), not the database's."""


def _calls(url: str) -> int:
    engine = open_database(url)
    try:
        with transaction(engine) as session:
            return int(session.exec(select(func.count()).select_from(Call)).one()[0])
    finally:
        engine.dispose()


@pytest.mark.parametrize("optimistic", [True, False], ids=["optimistic", "careful"])
def test_a_batch_whose_transaction_was_aborted_unseen_commits_nothing_and_raises(
    pg_url: str, optimistic: bool
) -> None:
    engine = open_database(pg_url)
    try:
        with pytest.raises((BatchNotSettled, DBAPIError)), batch_transaction(engine, optimistic=optimistic):
            with transaction(engine) as session:
                run_statement(session, insert(Call), CALL)
            batch = pipelined_batch()
            assert batch is not None and batch.pipeline is not None
            with suppress(Exception):  # a write fails, and its error is swallowed on the way
                batch.driver.execute("INSERT INTO call (number) VALUES (NULL)")
                batch.pipeline.sync()
    finally:
        engine.dispose()
    assert _calls(pg_url) == 0


def test_an_optimistic_batch_where_a_later_message_fails_on_its_own_commits_nothing(pg_url: str) -> None:
    engine = open_database(pg_url)
    try:
        with pytest.raises(BatchNotSettled), batch_transaction(engine, optimistic=True):
            with transaction(engine) as session:  # a write that fails, not waited for
                run_statement(session, insert(Call), CALL)
                run_statement(session, insert(Call), CALL)
            with pytest.raises(OwnFailure), transaction(engine):  # its rollback meets that failure
                raise OwnFailure
    finally:
        engine.dispose()
    assert _calls(pg_url) == 0
