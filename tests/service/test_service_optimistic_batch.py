"""On PostgreSQL a batch first runs without waiting for each message's writes (the real service).

The server works on one message while the service works on the next; a write that fails then
rolls the whole batch back, and the batch runs again message by message, where the failing mail
is quarantined alone and every other one is processed once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from db_faults import CONSTRAINT, POISON, install_failing_triggers
from servers.dovecot import Dovecot
from service_desk import make_mail, run_async
from test_service_backlog import append_all
from test_service_no_stall import imap_desk

from engine.service import Service
from engine.service.watcher import BATCH_MESSAGES

User = tuple[str, str]


def test_on_postgresql_a_failing_write_runs_its_batch_again_and_quarantines_that_mail_alone(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    desk = imap_desk(tmp_path, dovecot, mailbox_user, pg_url)
    install_failing_triggers(desk.runtime.engine)
    count = 2 * BATCH_MESSAGES + 10  # a backlog: read ahead by the parse worker
    subjects = {7: f"Scanner {POISON}", BATCH_MESSAGES + 3: f"Mouse {CONSTRAINT}"}
    append_all(dovecot, mailbox_user, [make_mail(n, subjects.get(n)) for n in range(1, count + 1)])
    try:
        with caplog.at_level(logging.DEBUG, logger="mailgate.service"):
            [report] = run_async(Service(desk.runtime).run_once())
    finally:
        desk.runtime.close()

    assert report.error is None
    assert dict(report.outcomes) == {"logged": count - 2, "quarantined": 2}
    assert dovecot.count(mailbox_user[0]) == 0
    ledger = desk.ledger()
    assert [entry.message_id for entry in ledger if entry.outcome == "quarantined"] == [
        "m7@example.com",
        f"m{BATCH_MESSAGES + 3}@example.com",
    ]
    assert sorted(entry.message_id for entry in ledger) == sorted(
        f"m{n}@example.com" for n in range(1, count + 1)
    )
    assert desk.call_count() == count - 2  # each good mail logged once, though its batch ran twice
    run_again = [r for r in caplog.records if "event=batch_run_again " in r.getMessage()]
    assert len(run_again) == 2  # the two batches with a failing mail, no other
