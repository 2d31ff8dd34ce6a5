"""Parsing fetched mail ahead, in a worker process, while the service processes earlier mail.

On a backlog, reading a message (MIME, headers, addresses, text) is about a third of the work
and the rest (deciding, the database) needs no result of it until the message's turn. So the
service hands each fetched batch to one worker process to parse and meanwhile processes the
previous batch: on a machine with two cores both run at once. The worker
(``python -m engine.mail.parse_worker``) imports only what reading mail needs, so it is up in about a
tenth of a second; it only turns bytes into ``IncomingMessage`` values. Everything that writes
stays in the service's process, in order, each message acknowledged after its batch's commit.

The worker is started at a backlog and stopped when no account has one left. Until it has answered
once, batches are parsed in the service's process, never waited for; so are batches of more than
``MAX_BATCH_BYTES`` (a big attachment is not copied to another process and back). If the worker
cannot be started, or dies (killed, out of memory), the service parses in its own process from
then on, as it always does for a mailbox with little waiting. Requests are written and answers
read by two threads of the service, so that the event loop never waits on the worker's pipes.
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
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import cast

from engine.errors import MailError
from engine.mail.message import IncomingMessage
from engine.mail.parse_worker import read_frame, write_frame
from engine.pipeline import read_message

log = logging.getLogger("mailgate.service")

Parsed = IncomingMessage | MailError
Parsing = Future[list[IncomingMessage | str]]
MAX_BATCH_BYTES = 4 * 1024 * 1024


class WorkerGone(Exception):
    """The parse worker ended, or its answer could not be read."""


class _Worker:
    """One ``engine.mail.parse_worker`` process and the two threads that talk to it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.mail.parse_worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._requests: queue.SimpleQueue[tuple[Parsing, object] | None] = queue.SimpleQueue()
        self._waiting: deque[Parsing] = deque()  # answered in the order asked
        self._lock = threading.Lock()
        self._gone = False
        self.writer = threading.Thread(target=self._write, name="parse-worker-writer", daemon=True)
        self.reader = threading.Thread(target=self._read, name="parse-worker-reader", daemon=True)
        self.writer.start()
        self.reader.start()

    def submit(self, raws: list[bytes], our_addresses: frozenset[str]) -> Parsing:
        parsing: Parsing = Future()
        with self._lock:
            if self._gone:
                raise WorkerGone("the parse worker has ended")
            self._waiting.append(parsing)
        self._requests.put((parsing, (our_addresses, raws)))
        return parsing

    def _write(self) -> None:
        stream = self.process.stdin
        assert stream is not None
        try:
            while (item := self._requests.get()) is not None:
                parsing, request = item
                try:
                    running = parsing.set_running_or_notify_cancel()
                except RuntimeError:  # failed already by the reader: the worker has ended
                    break
                if running:
                    write_frame(stream, request)
                else:
                    write_frame(stream, (frozenset(), []))  # keep answers in step: an empty batch
        except (OSError, ValueError):  # the worker has ended: the reader fails what waits
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        reason = "the parse worker ended"
        try:
            while (answer := read_frame(stream)) is not None:
                with self._lock:
                    parsing = self._waiting.popleft()
                if not parsing.cancelled():
                    parsing.set_result(cast(list[IncomingMessage | str], answer))
        except Exception as exc:  # a broken pipe, a truncated frame, an unpicklable answer
            reason = f"the parse worker's answer could not be read: {exc}"
        with contextlib.suppress(OSError):
            stream.close()
        with self._lock:
            self._gone = True
            waiting, self._waiting = list(self._waiting), deque()
        for parsing in waiting:
            if not parsing.cancelled():
                with contextlib.suppress(Exception):
                    parsing.set_exception(WorkerGone(reason))

    def stop(self) -> None:
        self._requests.put(None)
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)


class ParseAhead:
    """One worker process that parses batches of raw messages for the service (see the module)."""

    def __init__(self, our_addresses: frozenset[str]) -> None:
        self.our_addresses = our_addresses
        self._worker: _Worker | None = None
        self._given_up = False
        self._answered = False  # the worker has returned a result: it is up, worth waiting for
        self._backlogs = 0

    @contextlib.contextmanager
    def backlog(self) -> Iterator[ParseAhead]:
        """Use the worker for one pass over a backlog; it is stopped when no backlog is left."""
        self._backlogs += 1
        try:
            yield self
        finally:
            self._backlogs -= 1
            if self._backlogs == 0:
                self.close()

    def submit(self, raws: list[bytes]) -> Parsing | None:
        """Start parsing ``raws`` in the worker (started now if need be); None to parse them here."""
        if self._given_up or sum(len(raw) for raw in raws) > MAX_BATCH_BYTES:
            return None
        try:
            if self._worker is None:
                self._worker = _Worker()
            parsing = self._worker.submit(raws, self.our_addresses)
        except Exception as exc:
            self._give_up(exc)
            return None
        parsing.add_done_callback(self._note_answer)
        return parsing

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs (for tests and diagnostics)."""
        return self._worker.process.pid if self._worker is not None else None

    def _note_answer(self, parsing: Parsing) -> None:  # on the reader thread: only a flag
        if not parsing.cancelled() and parsing.exception() is None:
            self._answered = True

    async def results(self, parsing: Parsing | None, raws: list[bytes]) -> list[Parsed]:
        """What ``submit`` started; parsed here if the worker is not up yet, or failed."""
        if parsing is not None and (self._answered or parsing.done()):
            try:
                outcomes = await asyncio.wrap_future(parsing)
            except Exception as exc:  # the worker died or could not start
                self._give_up(exc)
            else:
                if len(outcomes) == len(raws):
                    return [MailError(o) if isinstance(o, str) else o for o in outcomes]
        elif parsing is not None:
            parsing.cancel()  # if it has not started: the worker is still starting, do not wait
        return [read_message(raw, self.our_addresses) for raw in raws]

    def _give_up(self, exc: BaseException) -> None:
        if not self._given_up:
            self._given_up = True
            log.warning("parsing in the service's process from now on: the parse worker failed: %s", exc)
        self.close()

    def close(self) -> None:
        """Stop the worker (pending work is dropped); never raises."""
        worker, self._worker = self._worker, None
        self._answered = False
        if worker is not None:
            worker.stop()
