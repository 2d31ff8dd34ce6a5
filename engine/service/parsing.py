"""Parsing fetched mail ahead, in a worker process, while the service processes earlier mail.

On a backlog, reading a message (MIME, headers, addresses, text) is about a third of the work
and the rest (deciding, the database) needs no result of it until the message's turn. So the
service hands each fetched batch to one worker process to parse and meanwhile processes the
previous batch: on a machine with two cores both run at once. The worker
(``python -m engine.mail.parse_worker``) imports only what reading mail needs, so it is up in about a
tenth of a second; it only turns bytes into ``IncomingMessage`` values. Everything that writes
stays in the service's process, in order, each message acknowledged after its batch's commit.

The worker is started at a backlog and stopped when no account has one left. Until it has answered
once, a batch it has not begun to read is parsed in the service's process, never waited for (the
worker is still starting); so are batches of more than
``MAX_BATCH_BYTES`` (a big attachment is not copied to another process and back). If the worker
cannot be started, or dies (killed, out of memory), the service parses in its own process from
then on, as it always does for a mailbox with little waiting. Requests are written and answers
read by two threads of the service, so that the event loop never waits on the worker's pipes.

The worker shares a small file with the service (``engine.mail.parse_worker.Progress``): it says
there which message it reads and since when, and sends a batch's answers together, unless the
service says there that it waits for one. So the service's reader thread wakes once a batch, not
once a message, while the service processes the batch before.

The time limit (``processing.time_limit_seconds``) covers reading a message in the worker too: the
worker gives up on a message at the limit by itself. If the service waits for an answer and the
worker has been reading the same message for ``STALL_GRACE_SECONDS`` past the limit (it is stuck
in code no signal interrupts), that message is quarantined as over the time limit, the worker is
killed, and the batch's other messages without an answer are read in the service's process
(``process_message``, under the same limit); the next backlog batch starts a new worker.
Messages parsed in the service's process are left to ``process_message`` (``None`` in
``results``), which reads each under the time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from engine.errors import MailError
from engine.mail.message import IncomingMessage
from engine.mail.parse_worker import Answer, Keep, Progress, read_frame, write_frame
from engine.rules.subject import ParsedSubject
from engine.rules.vocabulary import Keywords

log = logging.getLogger("mailgate.service")

Parsed = IncomingMessage | MailError
MAX_BATCH_BYTES = 4 * 1024 * 1024
STALL_GRACE_SECONDS = 1.0  # past the time limit, a missing answer means the worker is stuck


class WorkerGone(Exception):
    """The parse worker ended, or its answer could not be read."""


def originals_held(originals: list[bytes | bool | None], *, complete: bool) -> list[bytes | bool | None]:
    """The originals the service can count on as the worker answered them (``complete``: all came).

    The originals' file holds a batch's originals (True) only once the batch's last answer came
    and did not say False (engine.mail.parse_worker): else each True is None, and the service
    keeps that original itself.
    """
    if complete and originals and originals[-1] is not False:
        return originals
    return [None if original is True or original is False else original for original in originals]


class Parsing:
    """One batch handed to the worker: a future per message, answered in order."""

    def __init__(self, worker: _Worker, count: int, keywords: Keywords | None = None) -> None:
        self.worker = worker
        self.keywords = keywords  # those the worker read the subjects with (Parsing.subjects)
        self.answers: list[Future[Answer]] = [Future() for _ in range(count)]
        self.state = "queued"  # queued -> written | skipped (cancelled before it was written)
        self.number = 0  # once written: which of the worker's requests it is (from 1; Progress)
        self.received = 0  # answers set so far (by the reader thread)
        # each message's original as stored when the worker compressed it, True when it kept it
        # in the originals' file (set by ``results``)
        self.originals: list[bytes | bool | None] = [None] * count
        # each message's subject as ``keywords`` read it, when the worker could (set by ``results``)
        self.subjects: list[ParsedSubject | None] = [None] * count

    def done(self) -> bool:
        """Whether every message of the batch has its answer (or the worker failed)."""
        return all(answer.done() for answer in self.answers)

    def cancel(self) -> bool:
        """Withdraw the batch if it has not been written to the worker yet; True if withdrawn."""
        with self.worker.lock:
            if self.state == "queued":
                self.state = "skipped"
            return self.state == "skipped"

    def result(self, timeout: float) -> list[Answer]:
        """Every answer, waiting at most ``timeout`` seconds for each (for tests and tools)."""
        return [answer.result(timeout) for answer in self.answers]


class _Worker:
    """One ``engine.mail.parse_worker`` process and the two threads that talk to it."""

    def __init__(self) -> None:
        self.progress = Progress.create()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.mail.parse_worker", str(os.getpid()), str(self.progress.fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
                pass_fds=(self.progress.fd,),
            )
        except BaseException:
            self.progress.close()
            raise
        self.written = 0  # requests written to the worker
        self.lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[Parsing, object] | None] = queue.SimpleQueue()
        self._waiting: deque[Parsing] = deque()  # answered in the order asked
        self._gone = False
        self.stopped = False  # stopped by the service (a stall, a close): not a failure of the worker
        self.answered = False  # has sent an answer: it is up, worth waiting for
        self.last_answer_at = time.monotonic()
        self.writer = threading.Thread(target=self._write, name="parse-worker-writer", daemon=True)
        self.reader = threading.Thread(target=self._read, name="parse-worker-reader", daemon=True)
        self.writer.start()
        self.reader.start()

    def submit(
        self,
        raws: list[bytes],
        our_addresses: frozenset[str],
        seconds: float,
        keep: Keep,
        keywords: Keywords | None = None,
    ) -> Parsing:
        parsing = Parsing(self, len(raws), keywords)
        with self.lock:
            if self._gone:
                raise WorkerGone("the parse worker has ended")
            self._waiting.append(parsing)
        self._requests.put((parsing, (our_addresses, seconds, keep, raws, keywords)))
        return parsing

    def _write(self) -> None:
        stream = self.process.stdin
        assert stream is not None
        try:
            while (item := self._requests.get()) is not None:
                parsing, request = item
                with self.lock:
                    if self._gone:
                        break
                    skipped = parsing.state == "skipped"
                    parsing.state = "skipped" if skipped else "written"
                    if not skipped:
                        self.written += 1
                        parsing.number = self.written
                if not skipped:
                    write_frame(stream, request)
        except (OSError, ValueError):  # the worker has ended: the reader fails what waits
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def _next_answer(self) -> Future[Answer]:
        """The future the next frame answers (under the lock): of the oldest batch written."""
        while self._waiting and (
            self._waiting[0].state == "skipped" or self._waiting[0].received == len(self._waiting[0].answers)
        ):
            self._waiting.popleft()
        if not self._waiting:
            raise ValueError("an answer that no request asked for")
        parsing = self._waiting[0]
        parsing.received += 1
        return parsing.answers[parsing.received - 1]

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        reason = "the parse worker ended"
        try:
            while (answer := read_frame(stream)) is not None:
                with self.lock:
                    future = self._next_answer()
                    self.answered, self.last_answer_at = True, time.monotonic()
                if not future.cancelled():
                    future.set_result(answer)  # type: ignore[arg-type]
        except Exception as exc:  # a broken pipe, a truncated frame, an unpicklable answer
            reason = f"the parse worker's answer could not be read: {exc}"
        with contextlib.suppress(OSError):
            stream.close()
        with self.lock:
            self._gone = True
            waiting, self._waiting = list(self._waiting), deque()
        for parsing in waiting:
            for future in parsing.answers:
                if not future.done():
                    with contextlib.suppress(Exception):
                        future.set_exception(WorkerGone(reason))

    def has_begun(self, parsing: Parsing) -> bool:
        """Whether the worker has begun to read ``parsing`` (it is up: its answers come soon)."""
        number, index, _ = self.progress.now_reading()
        return bool(parsing.number) and (number > parsing.number or (number == parsing.number and index >= 0))

    def stuck_at(self, parsing: Parsing) -> int | None:
        """The index of the message of ``parsing`` the worker reads now, if it reads one of it."""
        number, index, _ = self.progress.now_reading()
        return index if parsing.number and number == parsing.number and index >= 0 else None

    def stop(self) -> None:
        self.stopped = True
        self._requests.put(None)
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)
        self.progress.close()


class ParseAhead:
    """One worker process that parses batches of raw messages for the service (see the module)."""

    def __init__(
        self,
        our_addresses: frozenset[str],
        time_limit_seconds: float = 30.0,
        *,
        keep_originals: bool = False,
        originals_file: Path | None = None,
    ) -> None:
        self.our_addresses = our_addresses
        self.keep_originals = keep_originals  # the worker also compresses each original (Parsing.originals)
        self.originals_file = originals_file  # where the worker keeps them itself (a SQLite database's)
        self.time_limit_seconds = time_limit_seconds
        self._worker: _Worker | None = None
        self._given_up = False
        self.starts = 0  # worker processes started (one per backlog, and after a stall; /metrics shows it)
        self.failures = 0  # workers that failed (then parsing stays in the service's process)
        self.stalls = 0  # workers killed because a message held them past the time limit
        self._backlogs = 0

    @contextlib.contextmanager
    def backlog(self) -> Iterator[ParseAhead]:
        """Use the worker for one pass over a backlog; it is stopped when no backlog is left.

        The worker is started here, so that it starts up while the backlog's first batch is fetched.
        """
        self._backlogs += 1
        self._start()
        try:
            yield self
        finally:
            self._backlogs -= 1
            if self._backlogs == 0:
                self.close()

    def submit(
        self, raws: list[bytes], account: str | None = None, keywords: Keywords | None = None
    ) -> Parsing | None:
        """Start parsing ``raws`` in the worker (started now if need be); None to parse them here.

        With an ``account`` and an originals' file, the worker keeps the originals itself; with
        ``keywords`` (the account's pack's) it reads the subjects too (``Parsing.subjects``).
        """
        if self._given_up or sum(len(raw) for raw in raws) > MAX_BATCH_BYTES:
            return None
        if not self._start():
            return None
        assert self._worker is not None
        try:
            keep: Keep = self.keep_originals
            if keep and account is not None and self.originals_file is not None:
                keep = (str(self.originals_file), account)
            return self._worker.submit(raws, self.our_addresses, self.time_limit_seconds, keep, keywords)
        except Exception as exc:
            self._give_up(exc)
            return None

    def _start(self) -> bool:
        """Start the worker if none runs; whether one does (False once it could not be started)."""
        if self._given_up:
            return False
        if self._worker is None:
            try:
                self._worker = _Worker()
            except Exception as exc:
                self._give_up(exc)
                return False
            self.starts += 1
        return True

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs (for tests and diagnostics)."""
        return self._worker.process.pid if self._worker is not None else None

    def longest_wait(self, count: int) -> float:
        """The longest ``results`` may take for ``count`` messages: each within the limit and grace."""
        return count * (self.time_limit_seconds + STALL_GRACE_SECONDS)

    async def results(self, parsing: Parsing | None, raws: list[bytes]) -> list[Parsed | None]:
        """What ``submit`` started, message by message; None for each message to be parsed here.

        The originals the worker compressed are left in ``parsing.originals``, message by message
        (True for one it kept in the originals' file, once the batch's last answer says all are).

        A message the worker holds past the time limit is answered as quarantined (over the time
        limit) and the worker is killed; the messages after it are left to be parsed here.
        """
        unparsed: list[Parsed | None] = [None] * len(raws)
        if parsing is None or len(parsing.answers) != len(raws):
            return unparsed
        worker = parsing.worker
        if not (worker.answered or parsing.done() or worker.has_begun(parsing)):
            parsing.cancel()  # the worker is still starting: never wait for it
            return unparsed
        found: list[Parsed | None] = []
        waiting_since = time.monotonic()
        for answer in parsing.answers:
            try:
                value, subject, original = await self._answer(worker, answer, waiting_since)
            except TimeoutError:
                # the message the worker is stuck in; those before it, read but not yet sent, are
                # read again here (None), as are those after it
                stuck = worker.stuck_at(parsing)
                found += [None] * max((stuck or 0) - len(found), 0)
                limit = self.time_limit_seconds
                log.warning("the parse worker was stopped: a message held it past the time limit")
                found.append(MailError(f"time limit of {limit:g} s exceeded while reading the message"))
                self.stalls += 1
                self._stop(worker)
                break
            except Exception as exc:  # the worker died or could not start
                if not worker.stopped:
                    self._give_up(exc)
                break
            parsing.originals[len(found)] = original
            parsing.subjects[len(found)] = subject
            found.append(MailError(value) if isinstance(value, str) else value)
        parsing.originals = originals_held(parsing.originals, complete=len(found) == len(raws))
        return found + unparsed[len(found) :]

    async def _answer(self, worker: _Worker, answer: Future[Answer], waiting_since: float) -> Answer:
        """One answer; TimeoutError once the worker has read no message to its end (nor begun
        another) for the time limit and its grace."""
        if answer.done():  # the worker is ahead, as on most of a backlog: no wait, no wake-up of the loop
            return answer.result()
        worker.progress.want(True)  # the worker sends what it holds, and each answer from now on
        try:
            waiting = asyncio.wrap_future(answer)
            while True:
                _, _, reading_since = worker.progress.now_reading()
                deadline = max(worker.last_answer_at, waiting_since, reading_since) + self.time_limit_seconds
                left = deadline + STALL_GRACE_SECONDS - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({waiting}, timeout=left)
                if done:
                    return waiting.result()
        finally:
            worker.progress.want(False)

    def _stop(self, worker: _Worker) -> None:
        """Kill a stuck worker; the next batch starts a new one."""
        if self._worker is worker:
            self._worker = None
        worker.stop()

    def _give_up(self, exc: BaseException) -> None:
        if not self._given_up:
            self._given_up = True
            self.failures += 1
            log.warning("parsing in the service's process from now on: the parse worker failed: %s", exc)
        self.close()

    def close(self) -> None:
        """Stop the worker (pending work is dropped); never raises."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
