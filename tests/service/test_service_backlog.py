"""A backlog (more than one batch waiting) on the real Dovecot: batches, acknowledgements, the parse worker.

On a backlog the service fetches and acknowledges ``BATCH_MESSAGES`` at a time and parses the next
batch in a worker process while it processes the current one (engine/service/parsing.py). None of
that may change what happens to a message: the same outcome, in UID order, each acknowledged only
after its commit, a stop or a crash costing no mail and no second effect.
"""

from __future__ import annotations

import imaplib
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot
from service_desk import ServiceDesk, account_yaml, build_service_desk, make_mail, run_async

from connectors.base import MessageRef
from engine.errors import MailError
from engine.mail.message import IncomingMessage
from engine.pipeline import read_message
from engine.rules.subject import Intent, default_keywords
from engine.service import Service
from engine.service.parsing import ParseAhead, Parsing
from engine.service.runner import TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV
from engine.service.watcher import BATCH_BYTES, BATCH_MESSAGES, next_batch
from engine.storage.db import transaction
from engine.storage.original_file import OriginalsFile
from engine.storage.originals import find_originals

User = tuple[str, str]
MAILGATE = Path(sys.executable).parent / "mailgate"
BACKLOG = 2 * BATCH_MESSAGES + 20


def unreadable(number: int) -> bytes:
    """A mail without a From header (quarantined: no sender)."""
    msg = EmailMessage()
    msg["To"] = "helpdesk@example.com"
    msg["Subject"] = f"No sender {number}"
    msg["Message-ID"] = f"<m{number}@example.com>"
    msg.set_content("Who sent this?")
    return msg.as_bytes()


def append_all(dovecot: Dovecot, user: User, raws: list[bytes]) -> None:
    """APPEND in order over one session (the server gives them ascending UIDs)."""
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=30)
    try:
        client.login(*user)
        for raw in raws:
            assert client.append("INBOX", None, None, raw)[0] == "OK"
    finally:
        client.logout()


def imap_desk(root: Path, dovecot: Dovecot, user: User) -> ServiceDesk:
    """An installation reading ``user``'s INBOX over plain IMAP."""
    connector = (
        f"{{type: imap, host: {dovecot.host}, port: {dovecot.imap_port}, security: plain, "
        f"username: {user[0]}, password: '{user[1]}', timeout: 10}}"
    )
    return build_service_desk(root, account_yaml("helpdesk", connector, poll=3600))


def mailgate(desk: ServiceDesk, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``mailgate`` command on the desk's config."""
    hooks = (TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV)
    clean = {k: v for k, v in os.environ.items() if k not in hooks}
    return subprocess.run(
        [str(MAILGATE), "--config", str(desk.config_path), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
    )


def test_a_backlog_is_processed_in_uid_order_with_unreadable_mail_quarantined(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    raws = [unreadable(n) if n in (7, 77) else make_mail(n) for n in range(1, BACKLOG + 1)]
    append_all(dovecot, mailbox_user, raws)
    desk = imap_desk(tmp_path, dovecot, mailbox_user)

    [report] = run_async(Service(desk.runtime).run_once())

    assert report.error is None
    assert dict(report.outcomes) == {"logged": BACKLOG - 2, "quarantined": 2}
    ledger = desk.ledger()
    assert [e.message_id for e in ledger] == [f"m{n}@example.com" for n in range(1, BACKLOG + 1)]
    assert [e.outcome for e in ledger if e.outcome != "logged"] == ["quarantined", "quarantined"]
    assert [e.number for e in ledger if e.outcome == "logged"] == list(range(1, BACKLOG - 1))
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_backlog_keeps_every_original_as_read_whether_the_worker_or_the_service_compressed_it(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    raws = [make_mail(n) for n in range(1, BACKLOG + 1)]
    append_all(dovecot, mailbox_user, raws)
    desk = imap_desk(tmp_path, dovecot, mailbox_user)
    service = Service(desk.runtime)

    [report] = run_async(service.run_once())

    assert report.error is None and dict(report.outcomes) == {"logged": BACKLOG}
    assert service.parser.keep_originals and service.parser.starts == 1  # the worker compressed some
    with transaction(desk.runtime.engine) as session:
        kept = [find_originals(session, f"m{n}@example.com") for n in range(1, BACKLOG + 1)]
    assert [len(found) for found in kept] == [1] * BACKLOG
    assert [found[0].raw.replace(b"\r\n", b"\n") for found in kept] == [
        r.replace(b"\r\n", b"\n") for r in raws
    ]


def test_the_parse_worker_compresses_the_originals_of_the_mail_it_reads_when_they_are_kept() -> None:
    raws = [make_mail(1), unreadable(2)]
    ahead = ParseAhead(frozenset({"helpdesk@example.com"}), keep_originals=True)

    async def scenario() -> tuple[list[object], list[bytes | bool | None]]:
        parsing = ahead.submit(raws)
        assert parsing is not None
        parsing.result(timeout=120)  # the worker is up and has answered
        return list(await ahead.results(parsing, raws)), parsing.originals

    try:
        found, originals = run_async(scenario())
    finally:
        ahead.close()

    assert getattr(found[0], "message_id", None) == "m1@example.com" and isinstance(found[1], MailError)
    assert isinstance(originals[0], bytes) and zlib.decompress(originals[0]) == raws[0]
    assert originals[1] is None  # an unreadable mail is quarantined whole, not kept as an original


def _worker_keeping_originals_in(
    path: Path, raws: list[bytes]
) -> tuple[list[object], list[bytes | bool | None]]:
    """What a parse worker answers for ``raws`` when asked to keep their originals in ``path``."""
    ahead = ParseAhead(frozenset({"helpdesk@example.com"}), keep_originals=True, originals_file=path)

    async def scenario() -> tuple[list[object], list[bytes | bool | None]]:
        parsing = ahead.submit(raws, "helpdesk")
        assert parsing is not None
        parsing.result(timeout=120)
        return list(await ahead.results(parsing, raws)), parsing.originals

    try:
        return run_async(scenario())
    finally:
        ahead.close()


def test_the_parse_worker_keeps_the_originals_in_the_databases_originals_file_before_it_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "desk.originals.sqlite"
    raws = [make_mail(1), unreadable(2), make_mail(3)]

    found, originals = _worker_keeping_originals_in(path, raws)

    assert originals == [True, None, True]  # kept (committed) by the worker; the unreadable one is not
    kept = OriginalsFile(path, create=False)
    try:
        rows = kept.rows()
    finally:
        kept.close()
    assert [(r.account, r.message_key, r.fingerprint) for r in rows] == [
        ("helpdesk", m.key, m.fingerprint) for m in (found[0], found[2]) if isinstance(m, IncomingMessage)
    ]
    assert [zlib.decompress(r.data) for r in rows] == [raws[0], raws[2]]


def test_when_the_originals_file_cannot_be_written_the_worker_hands_the_originals_to_the_service(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the originals' folder should be")
    raws = [make_mail(1), make_mail(2)]

    found, originals = _worker_keeping_originals_in(blocked / "desk.originals.sqlite", raws)

    assert all(isinstance(m, IncomingMessage) for m in found)
    assert [zlib.decompress(o) for o in originals if isinstance(o, bytes)] == raws  # the service keeps them


def test_a_stop_in_a_backlog_begins_no_further_message_and_loses_none(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    append_all(dovecot, mailbox_user, [make_mail(n) for n in range(1, BACKLOG + 1)])
    desk = imap_desk(tmp_path, dovecot, mailbox_user)
    stop_after = BATCH_MESSAGES + 10  # in the middle of the second batch

    stopped = mailgate(desk, "run", "--once", **{TEST_SIGNAL_AFTER_MESSAGE_ENV: f"{stop_after}:SIGTERM"})

    assert stopped.returncode == 0, stopped.stderr
    assert len(desk.ledger()) == stop_after
    assert dovecot.count(mailbox_user[0]) == BACKLOG - stop_after  # every committed one acknowledged
    again = mailgate(desk, "run", "--once")
    left = BACKLOG - stop_after
    assert again.stdout.splitlines() == [f"helpdesk: {left} processed ({left} logged)"], again.stderr
    assert desk.call_count() == BACKLOG
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_crash_after_a_batch_commit_in_a_backlog_acts_on_no_message_twice(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    append_all(dovecot, mailbox_user, [make_mail(n) for n in range(1, BACKLOG + 1)])
    desk = imap_desk(tmp_path, dovecot, mailbox_user)
    crash_after = BATCH_MESSAGES + 10  # the commit of the second batch keeps it

    crashed = mailgate(desk, "run", "--once", **{TEST_SIGNAL_AFTER_COMMIT_ENV: f"{crash_after}:SIGKILL"})

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    committed = len(desk.ledger())
    assert committed == 2 * BATCH_MESSAGES  # both batches committed, the second never acknowledged
    left = dovecot.count(mailbox_user[0])
    assert left == BACKLOG - BATCH_MESSAGES
    again = mailgate(desk, "run", "--once")
    assert again.returncode == 0, again.stderr
    counts = f"{BATCH_MESSAGES} duplicate, {BACKLOG - committed} logged"
    assert again.stdout.splitlines() == [f"helpdesk: {left} processed ({counts})"]
    assert desk.call_count() == BACKLOG  # one call per mail, none twice
    assert len(desk.ledger()) == BACKLOG
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_crash_inside_a_batch_keeps_nothing_of_that_batch_and_loses_no_mail(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    append_all(dovecot, mailbox_user, [make_mail(n) for n in range(1, BACKLOG + 1)])
    desk = imap_desk(tmp_path, dovecot, mailbox_user)
    crash_after = BATCH_MESSAGES + 10  # done, but its batch (the second) not yet committed

    crashed = mailgate(desk, "run", "--once", **{TEST_SIGNAL_AFTER_MESSAGE_ENV: f"{crash_after}:SIGKILL"})

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(desk.ledger()) == BATCH_MESSAGES  # only the first batch was committed
    assert desk.call_count() == BATCH_MESSAGES
    assert dovecot.count(mailbox_user[0]) == BACKLOG - BATCH_MESSAGES
    again = mailgate(desk, "run", "--once")
    left = BACKLOG - BATCH_MESSAGES
    assert again.stdout.splitlines() == [f"helpdesk: {left} processed ({left} logged)"], again.stderr
    assert desk.call_count() == BACKLOG
    assert [e.message_id for e in desk.ledger()] == [f"m{n}@example.com" for n in range(1, BACKLOG + 1)]
    assert dovecot.count(mailbox_user[0]) == 0


def test_the_parse_worker_reads_mail_as_parsing_here_does_and_after_it_dies_mail_is_parsed_here() -> None:
    ours = frozenset({"helpdesk@example.com"})
    raws = [make_mail(1), unreadable(2), make_mail(3, subject="RE: [CALL#3] still broken")]
    here = [read_message(raw, ours) for raw in raws]
    ahead = ParseAhead(ours)

    async def scenario() -> tuple[list[object], list[object], object]:
        parsing = ahead.submit(raws)
        assert parsing is not None
        parsing.result(timeout=120)  # the worker is up and has answered
        from_worker = list(await ahead.results(parsing, raws))
        pid = ahead.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the worker dies (killed, out of memory...)
        after_death = list(await ahead.results(ahead.submit(raws), raws))
        return from_worker, after_death, ahead.submit(raws)

    try:
        from_worker, after_death, later = run_async(scenario())
    finally:
        ahead.close()

    def reasons(found: list[object]) -> list[object]:
        return [x.reason if isinstance(x, MailError) else x for x in found]

    assert isinstance(here[1], MailError) and "no sender" in here[1].reason
    assert reasons(from_worker) == reasons(here)
    assert after_death == [None, None, None]  # left to process_message, which parses here
    assert later is None  # parsed in the service's process from then on


def test_a_parse_worker_stuck_on_a_message_is_killed_that_message_quarantined_and_the_rest_parsed_here() -> (
    None
):
    ours = frozenset({"helpdesk@example.com"})
    raws = [make_mail(1), make_mail(2), make_mail(3)]
    ahead = ParseAhead(ours, time_limit_seconds=0.5)

    async def scenario() -> tuple[list[object], int, int | None, list[object]]:
        first = ahead.submit(raws)
        assert first is not None
        first.result(timeout=120)  # the worker is up and has answered
        stuck_pid = ahead.worker_pid
        assert stuck_pid is not None
        os.kill(stuck_pid, signal.SIGSTOP)  # stuck, as in code that no signal interrupts
        stuck = await ahead.results(ahead.submit(raws), raws)
        replaced = ahead.submit(raws)  # the next batch starts a new worker
        assert replaced is not None
        replaced.result(timeout=120)
        return stuck, stuck_pid, ahead.worker_pid, await ahead.results(replaced, raws)

    try:
        stuck, stuck_pid, new_pid, after = run_async(scenario())
    finally:
        ahead.close()

    held = stuck[0]
    assert isinstance(held, MailError)
    assert held.reason == "time limit of 0.5 s exceeded while reading the message"
    assert stuck[1:] == [None, None]  # left to process_message, which reads them under the limit
    assert new_pid is not None and new_pid != stuck_pid
    with pytest.raises(ProcessLookupError):
        os.kill(stuck_pid, 0)  # killed and reaped
    assert [getattr(m, "message_id", None) for m in after] == [f"m{n}@example.com" for n in (1, 2, 3)]


def _many_parts(parts: int) -> bytes:
    """A mail that takes long to read (its parts are counted, then refused as too many)."""
    return b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n" + b"--B\n\nx\n" * parts


def test_a_parse_worker_stuck_inside_a_batch_quarantines_the_message_it_is_stuck_in_not_the_first() -> None:
    ours = frozenset({"helpdesk@example.com"})
    raws = [make_mail(1), make_mail(2), _many_parts(300_000), make_mail(4)]
    ahead = ParseAhead(ours, time_limit_seconds=5)

    async def scenario() -> tuple[list[object], list[object]]:
        first = ahead.submit(raws[:2])
        assert first is not None
        first.result(timeout=120)  # the worker is up and has answered
        worker = ahead._worker
        assert worker is not None
        parsing = ahead.submit(raws)
        assert parsing is not None
        waited_until = time.monotonic() + 60
        while worker.progress.now_reading()[:2] != (parsing.number or -1, 2):  # reading the third
            assert time.monotonic() < waited_until, "the worker never began the third message"
            time.sleep(0.001)
        os.kill(worker.process.pid, signal.SIGSTOP)  # stuck there, as in code no signal interrupts
        # the first two were read, but the worker held their answers: nobody waited for them yet
        held = [answer.done() for answer in parsing.answers]
        return held, list(await ahead.results(parsing, raws))

    try:
        held, stuck = run_async(scenario())
    finally:
        ahead.close()

    assert held == [False, False, False, False]
    assert stuck[:2] == [None, None]  # read again here, by process_message, under the limit
    assert isinstance(stuck[2], MailError)
    assert stuck[2].reason == "time limit of 5 s exceeded while reading the message"
    assert stuck[3] is None


def test_a_parse_worker_sends_a_batchs_answers_together_unless_the_service_waits_for_one() -> None:
    ours = frozenset({"helpdesk@example.com"})
    raws = [make_mail(1), make_mail(2), _many_parts(150_000), make_mail(4)]
    ahead = ParseAhead(ours, time_limit_seconds=30)

    def done_while_reading_the_third(worker: Any, parsing: Parsing) -> list[bool]:
        waited_until = time.monotonic() + 60
        while worker.progress.now_reading()[:2] != (parsing.number or -1, 2):
            assert time.monotonic() < waited_until, "the worker never began the third message"
            time.sleep(0.001)
        # look for the first two answers while the worker still reads the third: an answer sent
        # arrives within moments; one held never does
        looked_until = time.monotonic() + 0.5
        while True:
            done = [answer.done() for answer in parsing.answers]
            assert worker.progress.now_reading()[:2] == (parsing.number, 2), "the third was read too soon"
            if all(done[:2]) or time.monotonic() > looked_until:
                return done
            time.sleep(0.005)

    async def scenario() -> tuple[list[bool], list[bool], list[object]]:
        first = ahead.submit(raws[:1])
        assert first is not None
        first.result(timeout=120)
        worker = ahead._worker
        assert worker is not None
        ahead_of_the_service = ahead.submit(raws)
        assert ahead_of_the_service is not None
        held = done_while_reading_the_third(worker, ahead_of_the_service)
        await ahead.results(ahead_of_the_service, raws)
        worker.progress.want(True)  # as the service says it while it waits for an answer
        waited_for = ahead.submit(raws)
        assert waited_for is not None
        sent = done_while_reading_the_third(worker, waited_for)
        return held, sent, list(await ahead.results(waited_for, raws))

    try:
        held, sent, found = run_async(scenario())
    finally:
        ahead.close()

    assert held == [False, False, False, False]  # read, and held back: nobody waited for them
    assert sent == [True, True, False, False]  # each sent as soon as it was read
    assert [getattr(m, "message_id", None) for m in found] == [
        "m1@example.com",
        "m2@example.com",
        None,
        "m4@example.com",
    ]
    assert isinstance(found[2], MailError) and "MIME parts" in found[2].reason


def test_a_batch_a_new_parse_worker_has_begun_to_read_is_waited_for_not_parsed_here() -> None:
    ours = frozenset({"helpdesk@example.com"})
    raws = [_many_parts(150_000), make_mail(2)]
    ahead = ParseAhead(ours, time_limit_seconds=30)

    async def scenario() -> tuple[bool, list[object]]:
        parsing = ahead.submit(raws)
        assert parsing is not None
        worker = ahead._worker
        assert worker is not None
        waited_until = time.monotonic() + 60
        while worker.progress.now_reading()[:2] != (parsing.number or -1, 0):  # reading the first
            assert time.monotonic() < waited_until, "the worker never began the batch"
            time.sleep(0.001)
        return worker.answered, list(await ahead.results(parsing, raws))

    try:
        answered_before, found = run_async(scenario())
    finally:
        ahead.close()

    assert answered_before is False  # a new worker, that has not answered yet
    assert isinstance(found[0], MailError) and "MIME parts" in found[0].reason  # the worker's answers
    assert getattr(found[1], "message_id", None) == "m2@example.com"


def test_a_batch_is_bounded_by_count_and_listed_size_and_ends_before_an_unknown_size() -> None:
    small = [MessageRef(f"s{n}", 1000) for n in range(BATCH_MESSAGES + 5)]
    assert next_batch(small, 0) == small[:BATCH_MESSAGES]
    assert next_batch(small, BATCH_MESSAGES) == small[BATCH_MESSAGES:]
    big = [MessageRef("b1", BATCH_BYTES // 2), MessageRef("b2", BATCH_BYTES // 2), MessageRef("b3", 1)]
    assert next_batch(big, 0) == big[:2]  # the third would pass the byte budget
    huge = [MessageRef("h", 10 * BATCH_BYTES), MessageRef("after", 1)]
    assert next_batch(huge, 0) == huge[:1]  # a message larger than the budget comes alone
    unknown = [MessageRef("k1", 10), MessageRef("u"), MessageRef("k2", 10)]
    assert next_batch(unknown, 0) == unknown[:1]
    assert next_batch(unknown, 1) == unknown[1:]  # unknown first: it leads, known ones may follow


def test_the_parse_worker_ends_when_the_service_dies() -> None:
    service = subprocess.run(  # a service that starts its worker, then dies without stopping it
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from engine.service.parsing import ParseAhead\n"
            "ahead = ParseAhead(frozenset())\n"
            "ahead.submit([b'From: a@example.com\\r\\n\\r\\nhi\\r\\n']).result(timeout=60)\n"
            "print(ahead.worker_pid, flush=True)\n"
            "os._exit(9)\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert service.returncode == 9, service.stderr
    pid = int(service.stdout)
    for _ in range(300):  # the kernel's death signal, or the watchdog within a second
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):
                return  # ended, waiting for its (new) parent to reap it
        time.sleep(0.1)
    raise AssertionError(f"the parse worker {pid} outlived the service")


def test_a_batch_failed_before_the_worker_was_sent_it_ends_the_writer_without_an_error() -> None:
    from engine.service.parsing import Parsing, _Worker

    errors: list[BaseException | None] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    worker = _Worker()
    try:
        worker.process.kill()  # the worker ends; the reader fails what waits
        worker.reader.join(30)
        worker._requests.put((Parsing(worker, 1), (frozenset(), 30.0, [b"x"])))
        worker.writer.join(30)
        assert not worker.writer.is_alive()
    finally:
        worker.stop()
        threading.excepthook = previous_hook
    assert errors == []


def test_the_parse_worker_reads_the_subjects_with_the_keywords_of_the_accounts_pack() -> None:
    keywords = default_keywords().replaced(close_call=("SHUT",))
    raws = [make_mail(1).replace(b"Subject: ", b"Subject: [SHUT#7] ", 1), unreadable(2)]
    ahead = ParseAhead(frozenset({"helpdesk@example.com"}))

    async def scenario() -> Parsing:
        for _ in range(2):  # the first batch is answered before the worker has loaded the parser
            parsing = ahead.submit(raws, "helpdesk", keywords)
            assert parsing is not None
            parsing.result(timeout=120)
            await ahead.results(parsing, raws)
        return parsing

    try:
        parsing = run_async(scenario())
    finally:
        ahead.close()

    assert parsing.keywords is keywords  # the service uses them only while the pack's are these
    first = parsing.subjects[0]
    assert first is not None and first.intent is Intent.CLOSE_CALL and first.number == 7
    assert parsing.subjects[1] is None  # unreadable: quarantined, no subject read
