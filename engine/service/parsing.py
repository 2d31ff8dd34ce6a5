"""Parsing fetched mail ahead, in a worker process, while the service processes earlier mail.

On a backlog, reading a message (MIME, headers, addresses, text) is about a third of the work
and the rest (deciding, the database) needs no result of it until the message's turn. So the
service hands each fetched batch to one worker process to parse and meanwhile processes the
previous batch: on a machine with two cores both run at once. The worker only turns bytes into
``IncomingMessage`` values (``engine.pipeline.read_message``); everything that writes stays in
the service's process, in order, one transaction per message, each acknowledged after its commit.

The worker is started at a backlog and stopped when no account has one left. Until it has answered
once (a fresh interpreter takes a moment to start), batches are parsed in the service's process,
never waited for; so are batches of more than ``MAX_BATCH_BYTES`` (a big attachment is not copied
to another process and back). If the worker cannot be started, or dies (killed, out of memory),
the service parses in its own process from then on, as it always does for a mailbox with little
waiting. The worker ignores SIGINT (Ctrl-C reaches the whole process group; the service stops
it) and ends when the service dies, however it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from engine.errors import MailError
from engine.mail import IncomingMessage, parse_message
from engine.pipeline import read_message

log = logging.getLogger("mailgate.service")

Parsed = IncomingMessage | MailError
Parsing = Future[list[IncomingMessage | str]]
MAX_BATCH_BYTES = 4 * 1024 * 1024
WATCHDOG_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def parse_batch(raws: list[bytes], our_addresses: frozenset[str]) -> list[IncomingMessage | str]:
    """In the worker: each message parsed, or the reason it cannot be read."""
    parsed: list[IncomingMessage | str] = []
    for raw in raws:
        try:
            parsed.append(parse_message(raw, our_addresses=our_addresses))
        except MailError as exc:
            parsed.append(exc.reason)
    return parsed


def _start_worker(service_pid: int) -> None:
    """In the worker, first: leave Ctrl-C to the service, and end with it.

    On Linux the kernel kills the worker when the service dies (from now on); a watchdog thread
    also ends it, within a second, once its parent is no longer the service (it died before this
    ran, or the system has no such signal): a worker never outlives the service.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))

    def watchdog() -> None:
        while os.getppid() == service_pid:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(0)

    threading.Thread(target=watchdog, name="service-watchdog", daemon=True).start()


class ParseAhead:
    """One worker process that parses batches of raw messages for the service (see the module)."""

    def __init__(self, our_addresses: frozenset[str]) -> None:
        self.our_addresses = our_addresses
        self._executor: ProcessPoolExecutor | None = None
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
            if self._executor is None:
                context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads
                self._executor = ProcessPoolExecutor(
                    1, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
                )
            parsing = self._executor.submit(parse_batch, raws, self.our_addresses)
        except Exception as exc:
            self._give_up(exc)
            return None
        parsing.add_done_callback(self._note_answer)
        return parsing

    def _note_answer(self, parsing: Parsing) -> None:  # on the executor's thread: only a flag
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
        executor, self._executor = self._executor, None
        self._answered = False
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.shutdown(wait=False, cancel_futures=True)
