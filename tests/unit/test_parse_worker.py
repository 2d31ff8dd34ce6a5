"""The parse worker's own process (engine/mail/parse_worker.py): its wire, its answers, its failures."""

from __future__ import annotations

import io
import pickle
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from engine.mail import parse_worker
from engine.mail.message import IncomingMessage, parse_message
from engine.mail.parse_worker import read_frame, write_frame
from engine.rules.subject import Intent, default_keywords, parse_subject
from engine.service.parsing import originals_held
from engine.storage.original_file import OriginalsFile

GOOD = b"From: Ann <ann@example.com>\r\nSubject: printer\r\nMessage-ID: <w1@example.com>\r\n\r\nHelp\r\n"
NO_SENDER = b"Subject: who?\r\n\r\nbody\r\n"


def test_a_frame_reads_back_as_written_and_a_clean_end_reads_as_none() -> None:
    stream = io.BytesIO()
    write_frame(stream, (frozenset({"desk@example.com"}), [GOOD]))
    stream.seek(0)
    assert read_frame(stream) == (frozenset({"desk@example.com"}), [GOOD])
    assert read_frame(stream) is None


def _run_worker(*requests: object, timeout: float = 60) -> io.BytesIO:
    """The answers of a worker process given these requests (then the end of its input)."""
    written = io.BytesIO()
    for request in requests:
        write_frame(written, request)
    done = subprocess.run(
        [sys.executable, "-m", "engine.mail.parse_worker"],
        input=written.getvalue(),
        capture_output=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return io.BytesIO(done.stdout)


def test_the_worker_answers_each_message_of_each_batch_with_what_parsing_here_gives() -> None:
    answers = _run_worker((frozenset(), 30.0, False, [GOOD, NO_SENDER]), (frozenset(), 30.0, False, [GOOD]))
    assert [read_frame(answers) for _ in range(3)] == [
        (parse_message(GOOD), None, None),
        ("no sender: From header missing", None, None),
        (parse_message(GOOD), None, None),
    ]
    assert read_frame(answers) is None


def test_the_worker_answers_a_message_over_its_time_limit_as_such_and_reads_the_next() -> None:
    slow = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n" + b"--B\n\nx\n" * 200_000
    answers = _run_worker((frozenset(), 0.05, False, [slow, GOOD]), timeout=120)
    assert read_frame(answers) == ("time limit of 0.05 s exceeded while reading the message", None, None)
    assert read_frame(answers) == (parse_message(GOOD), None, None)


def test_the_worker_compresses_each_original_it_read_when_originals_are_kept() -> None:
    answers = _run_worker((frozenset(), 30.0, True, [GOOD, NO_SENDER]))
    (parsed, _, original), unreadable = read_frame(answers), read_frame(answers)  # type: ignore[misc]
    assert parsed == parse_message(GOOD)
    assert zlib.decompress(original) == GOOD  # the zlib format, as the originals are kept
    assert unreadable == ("no sender: From header missing", None, None)  # quarantined whole instead


def test_the_worker_reads_each_subject_with_the_packs_keywords_from_its_second_batch_on() -> None:
    keywords = default_keywords().replaced(close_call=("SHUT",))
    tagged = GOOD.replace(b"Subject: ", b"Subject: [SHUT#12] ", 1)
    answers = _run_worker(
        (frozenset(), 30.0, False, [tagged], keywords),
        (frozenset(), 30.0, False, [tagged, NO_SENDER], keywords),
    )
    (_, first_subject, _) = read_frame(answers)  # type: ignore[misc]
    assert first_subject is None  # answered before the parser is loaded: the service reads it
    (parsed, subject, _), unreadable = read_frame(answers), read_frame(answers)  # type: ignore[misc]
    assert isinstance(parsed, IncomingMessage)
    assert subject == parse_subject(parsed.subject, keywords) and subject.intent is Intent.CLOSE_CALL
    assert unreadable == ("no sender: From header missing", None, None)


def test_keywords_sent_to_the_worker_are_checked_and_hashed_again_there() -> None:
    keywords = default_keywords().replaced(close_call=("SHUT",))
    again = pickle.loads(pickle.dumps(keywords))
    assert again == keywords and hash(again) == hash(keywords) and again is not keywords


def test_a_broken_stream_stops_the_worker_with_one_line_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.mail.parse_worker"],
        input=b"not a frame at all",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.decode().startswith("mailgate parse worker: stopped:")
    assert b"Traceback" not in done.stderr and done.stderr.count(b"\n") == 1


# --- the originals' file: a batch's originals in one transaction ----------------------------------


def _rows_in(path: Path) -> int:
    """The rows another connection sees committed in an originals' file."""
    return len(OriginalsFile(path).rows())


def _second(n: int) -> bytes:
    return GOOD.replace(b"<w1@example.com>", f"<w{n}@example.com>".encode())


def test_a_batchs_originals_are_one_transaction_committed_before_its_last_answer(tmp_path: Path) -> None:
    path = tmp_path / "desk.originals.sqlite"
    keep = (str(path), "helpdesk")
    first = [parse_worker.answer_one(_second(n), frozenset(), 30.0, keep) for n in (1, 2)]
    assert [original for _, _, original in first] == [True, True]
    assert _rows_in(path) == 0  # not yet: the batch's last answer is not written
    last = parse_worker._last_answer(parse_worker.answer_one(_second(3), frozenset(), 30.0, keep))
    assert last[2] is True
    assert _rows_in(path) == 3


def test_a_batchs_originals_that_cannot_be_committed_are_void_in_its_last_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full-disk.originals.sqlite"
    keep = (str(path), "helpdesk")
    first = parse_worker.answer_one(_second(1), frozenset(), 30.0, keep)
    assert first[2] is True

    def disk_full(self: OriginalsFile) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(OriginalsFile, "commit", disk_full)
    last = parse_worker._last_answer(parse_worker.answer_one(_second(2), frozenset(), 30.0, keep))
    assert last[2] is False  # every True of the batch is void: the service keeps them
    monkeypatch.undo()
    assert _rows_in(path) == 0
    after = parse_worker.answer_one(_second(3), frozenset(), 30.0, keep)
    assert isinstance(after[2], bytes)  # from then on the service keeps them, compressed here


def test_the_service_counts_on_the_workers_originals_only_when_the_batchs_last_answer_holds_them() -> None:
    assert originals_held([True, None, True], complete=True) == [True, None, True]
    assert originals_held([True, b"z", False], complete=True) == [None, b"z", None]
    assert originals_held([True, True, None], complete=False) == [None, None, None]  # the worker died


def test_a_new_originals_file_has_pages_of_16_kb_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    new = OriginalsFile(tmp_path / "new.originals.sqlite")
    assert new._db.execute("PRAGMA page_size").fetchone() == (16384,)
    older_path = tmp_path / "older.originals.sqlite"
    with sqlite3.connect(older_path) as older:  # as an earlier release made it: 4 KB pages, WAL
        older.execute("PRAGMA page_size=4096")
        older.execute("PRAGMA journal_mode=WAL")
        older.execute("CREATE TABLE kept (x)")
    older.close()
    reopened = OriginalsFile(older_path)
    assert reopened._db.execute("PRAGMA page_size").fetchone() == (4096,)
    keep = (str(older_path), "helpdesk")
    assert parse_worker._last_answer(parse_worker.answer_one(_second(9), frozenset(), 30.0, keep))[2] is True
    assert _rows_in(older_path) == 1


def test_a_subject_read_past_the_time_limit_leaves_the_message_read_and_the_subject_to_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.rules.subject

    def slow(subject: str, keywords: object) -> object:
        for _ in range(6000):  # as a subject the parser could not read in the time left
            time.sleep(0.01)
        return "read after all"  # only if the limit never came

    monkeypatch.setattr(engine.rules.subject, "parse_subject", slow)
    parsed, subject = parse_worker.parse_one(GOOD, frozenset(), 0.2, default_keywords())
    assert isinstance(parsed, IncomingMessage) and parsed.message_id == "w1@example.com"
    assert subject is None  # the service reads it again
