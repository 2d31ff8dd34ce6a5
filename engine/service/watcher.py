"""Watching one account: connect, process what waits oldest first, acknowledge, wait, again.

The order for every message is fixed: fetch, ``process_message`` (its effects and ledger entry
are committed when it returns, whatever the outcome: duplicate and quarantined included), then
acknowledge. A failed acknowledgement is logged and the pass goes on: the message stays in the
mailbox, the next pass finds it in the ledger (``duplicate``, nothing done) and acknowledges it.

Messages are driven a batch at a time (``fetch_many``, ``acknowledge_many``: one round trip each
where the protocol allows, as IMAP and POP3 do): up to ``BATCH_MESSAGES`` messages (and
``BATCH_BYTES``, by their listed sizes) are fetched together; each is processed in a savepoint of
its own (a failure undoes that message only, and quarantines it), the batch is committed once
(``batch_transaction``: group commit), and only then are its messages acknowledged together, also
when the batch was cut short by a stop request. If the batch cannot be committed (the database
went away), nothing of it is kept and nothing is acknowledged: the next pass does it again.

On a backlog (more than ``BATCH_MESSAGES`` waiting) the next batch is fetched, and handed to the
parse worker (``engine.service.parsing``), before the current one is processed, so that reading
mail and deciding on it run on two cores at once; a stop leaves that next batch untouched.

``process_message`` is synchronous and runs on the event loop's thread, which is the main
thread, so its SIGALRM time limit works; it holds the loop for the few milliseconds a message
takes. Everything else (connect, list, fetch, wait) is awaited with a time bound and gives way
to a stop request; the acknowledgement of a committed message is never interrupted.

Longer than 400 lines because the order above is what makes "never lose a mail, never act
twice" hold: fetch, process, commit, acknowledge, and every way a pass can fail in between, are
kept in one class so they can be read and reviewed together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from connectors.base import AuthenticationError, Connector, ConnectorError, MessageRef
from engine.config.model import AccountConfig
from engine.mail.message import IncomingMessage
from engine.outgoing.outbox import look_up_our_messages, look_up_recent_replies
from engine.pipeline import ProcessResult, process_message
from engine.rules.gather import look_up_targets
from engine.rules.subject import ParsedSubject
from engine.rules.vocabulary import Keywords
from engine.runtime import Runtime
from engine.service.events import log_event, log_event_with_traceback
from engine.service.leftovers import HalfAcknowledged
from engine.service.options import ServiceOptions
from engine.service.parsing import ParseAhead, Parsed, Parsing
from engine.service.stats import AccountStats
from engine.storage.db import BatchNotSettled, DatabaseError, batch_transaction
from engine.storage.failures import describe_database_error, is_outage
from engine.storage.leases import LeaseLost
from engine.storage.ledger import look_up_ahead
from engine.storage.models import utcnow
from engine.storage.queries import look_up_senders
from engine.storage.status import (
    STATE_AUTH_FAILED,
    STATE_OK,
    STATE_RETRYING,
    record_failure,
    record_pass,
)

T = TypeVar("T")

BATCH_MESSAGES = 50  # at most this many messages fetched (and acknowledged) together
BATCH_BYTES = 4 * 1024 * 1024  # and no more than this many bytes of them, by their listed sizes


@dataclass
class _Fetched:
    """A fetched batch: its refs, their raw bytes, and their parsing in the worker if started."""

    refs: Sequence[MessageRef]
    raws: list[bytes]
    parsing: Parsing | None


def _subject(fetched: _Fetched, index: int, keywords: Keywords) -> ParsedSubject | None:
    """The message's subject as the worker read it, if it read it with the pack's ``keywords``."""
    parsing = fetched.parsing
    return parsing.subjects[index] if parsing is not None and parsing.keywords is keywords else None


def _original(fetched: _Fetched, index: int) -> bytes | bool | None:
    """The message's original as stored if the parse worker compressed it, True if it kept it."""
    return fetched.parsing.originals[index] if fetched.parsing is not None else None


SEND_TURNS = 5  # turns of the event loop for a connector to put a request on the wire (IMAP: three)


def next_batch(refs: Sequence[MessageRef], start: int) -> list[MessageRef]:
    """The refs fetched together from ``start``: at least one, then while count and size allow.

    A message of unknown size ends the batch before it, so a batch is never larger than known.
    """
    batch = [refs[start]]
    total = refs[start].size or 0
    for ref in refs[start + 1 : start + BATCH_MESSAGES]:
        if ref.size is None or total + ref.size > BATCH_BYTES:
            break
        batch.append(ref)
        total += ref.size
    return batch


class StopRequested(Exception):
    """The service is stopping: leave the current wait (nothing is in hand)."""


@dataclass(frozen=True)
class PassReport:
    """What one pass over an account did (``mailgate run --once`` prints one per account)."""

    account: str
    processed: int
    outcomes: tuple[tuple[str, int], ...] = ()
    error: str | None = None
    state: str = STATE_OK

    @property
    def reached(self) -> bool:
        """True if the pass reached the mailbox and handled everything that was waiting."""
        return self.error is None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a failure for logs and ``mailgate status``."""
    if isinstance(exc, ConnectorError | DatabaseError):
        return " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, DBAPIError):  # the driver's words, without the statement and SQLAlchemy's link
        kind = "database unavailable" if is_outage(exc) else "database error"
        return f"{kind}: {describe_database_error(exc)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def database_away(exc: BaseException) -> bool:
    """Whether a failure is the database being unavailable for now (an outage: WARNING, not a bug)."""
    return isinstance(exc, DatabaseError) or (isinstance(exc, DBAPIError) and is_outage(exc))


class AccountWatcher:
    """Drives one account's connector; never raises out of ``watch`` or ``one_pass``."""

    def __init__(
        self,
        runtime: Runtime,
        account: AccountConfig,
        connector: Connector,
        options: ServiceOptions,
        stop: asyncio.Event,
        after_commit: Callable[[int], None] = lambda committed: None,
        parser: ParseAhead | None = None,
        after_message: Callable[[], None] = lambda: None,
        stats: AccountStats | None = None,
        fence: Callable[[Connection], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.account = account
        self.connector = connector
        self.options = options
        self.stop = stop
        self.after_commit = after_commit  # called with the number of messages a commit kept
        self.after_message = after_message  # called as each message is done, before its batch commits
        self.parser = parser  # parses a backlog's batches ahead, in a worker process
        self.fence = fence  # run first in every batch's transaction: raises LeaseLost if not ours
        self.connected = False
        self.failures = 0
        # what the account did, for /metrics and /healthz
        self.stats = stats or AccountStats(account.name, account.poll_interval_seconds)
        self._outcomes: Counter[str] = Counter()
        self._listed = False
        self.leftovers = HalfAcknowledged(runtime, account.name, connector)  # \Deleted, not expunged

    # --- the two ways to run ----------------------------------------------------------------------

    async def one_pass(self) -> PassReport:
        """Connect, handle everything waiting, close; report (``mailgate run --once``).

        A pass cut short by a stop request is not a failure: what was handled is reported.
        """
        failure: Exception | None = None
        try:
            await self._connect()
            await self._handle_waiting()
        except StopRequested:
            pass
        except Exception as exc:  # LeaseLost included: another process works the account now
            failure = exc
        finally:
            await self._close(always=failure is not None)
        outcomes = tuple(sorted(self._outcomes.items()))
        processed = sum(count for _, count in outcomes)
        if failure is not None:
            state, error = self._failed(failure, retry_in=None)
            return PassReport(self.account.name, processed, outcomes, error, state)
        if self._listed:
            self._passed()
        return PassReport(self.account.name, processed, outcomes)

    async def watch(self) -> None:
        """Poll (or wait for push) until the stop event is set; failures back off and retry."""
        interval = self.account.poll_interval_seconds
        try:
            while not self.stop.is_set():
                try:
                    await self._connect()
                    await self._handle_waiting()
                    self._passed()
                    if self.stop.is_set():
                        break
                    if self.connector.supports_push:
                        await self._guarded(
                            self.connector.wait_for_new(interval), interval + self.options.operation_timeout
                        )
                    else:
                        await self._close()  # POP3 deletions take effect on QUIT; no idle sessions
                        await self._sleep(interval)
                except StopRequested:
                    if self._listed:  # stopped within a pass: keep its count
                        self._passed()
                    break
                except LeaseLost as exc:  # another process works the account now: nothing was committed
                    log_event(logging.WARNING, "lease_lost", account=self.account.name, error=str(exc))
                    break
                except Exception as exc:
                    await self._close(always=True)  # also a half-opened session
                    auth = isinstance(exc, AuthenticationError)
                    policy = self.options.auth_retry if auth else self.options.retry
                    self.failures += 1
                    delay = policy.delay(self.failures)
                    self._failed(exc, retry_in=delay)
                    try:
                        await self._sleep(delay)
                    except StopRequested:
                        break
        finally:
            await self._close()

    # --- one pass ---------------------------------------------------------------------------------

    async def _connect(self) -> None:
        if not self.connected:
            await self._guarded(self.connector.connect(), self.options.operation_timeout)
            self.connected = True

    async def _handle_waiting(self) -> None:
        self._listed = False
        removed = await self.leftovers.finish(self._guarded, self.options.operation_timeout)
        if removed:
            log_event(logging.INFO, "half_acknowledged_removed", account=self.account.name, count=removed)
        refs = await self._guarded(self.connector.list_waiting(), self.options.operation_timeout)
        self._listed = True
        start = 0
        if self.parser is None or len(refs) <= BATCH_MESSAGES:
            while start < len(refs) and not self.stop.is_set():
                raws = await self._fetch(refs, start)
                await self._process_batch(_Fetched(refs[start : start + len(raws)], raws, None))
                start += len(raws)
            return
        # a backlog: batch k+1 is fetched (and parsed by the worker) before batch k is processed,
        # and batch k+2 is asked for before it, so the server sends it (and finishes acknowledging
        # batch k-1) while this process works
        with self.parser.backlog() as ahead:
            ready: list[_Fetched] = []
            while len(ready) < 2 and start < len(refs) and not self.stop.is_set():
                raws = await self._fetch(refs, start)
                ready.append(self._fetched(refs, start, raws, ahead))
                start += len(raws)
            while ready:
                asked: asyncio.Future[list[bytes]] | None = None
                if start < len(refs) and not self.stop.is_set():
                    asked = asyncio.ensure_future(self._fetch(refs, start))
                    for _ in range(SEND_TURNS):  # let it send its FETCH before the batch holds the loop
                        await asyncio.sleep(0)
                try:
                    await self._process_batch(ready.pop(0))  # begins nothing if a stop was requested
                    if asked is not None and not self.stop.is_set():
                        raws = await asked
                        ready.append(self._fetched(refs, start, raws, ahead))
                        start += len(raws)
                finally:
                    if asked is not None and not asked.done():
                        asked.cancel()
                        await asyncio.wait({asked}, timeout=5)
                    if asked is not None and asked.done() and not asked.cancelled():
                        asked.exception()  # a fetch not used (a stop, a failed batch): its failure is moot
                if self.stop.is_set():
                    return

    async def _fetch(self, refs: Sequence[MessageRef], start: int) -> list[bytes]:
        connector, wanted = self.connector, next_batch(refs, start)
        raws = await self._guarded(connector.fetch_many(wanted), self.options.operation_timeout)
        if not raws or len(raws) > len(wanted):
            raise ConnectorError(f"{type(connector).__name__}.fetch_many returned {len(raws)} messages")
        return raws

    def _fetched(
        self, refs: Sequence[MessageRef], start: int, raws: list[bytes], ahead: ParseAhead
    ) -> _Fetched:
        """A batch just fetched, handed to the parse worker."""
        keywords = self.runtime.pack_for(self.account).keywords
        return _Fetched(
            refs[start : start + len(raws)], raws, ahead.submit(raws, self.account.name, keywords)
        )

    async def _process_batch(self, fetched: _Fetched) -> None:
        """Process each message, commit the batch at once, then acknowledge those committed, together.

        The batch runs without giving way to the event loop (it holds the database's write lock);
        a stop request ends it after the message in hand, and what was done is committed.
        """
        raws = fetched.raws
        parsed: list[Parsed | None] | None = None  # None: read in process_message
        if self.parser is not None and fetched.parsing is not None and not self.stop.is_set():
            work = self.parser.results(fetched.parsing, raws)
            bound = self.parser.longest_wait(len(raws)) + self.options.operation_timeout
            parsed = await self._guarded(work, bound)
        # on PostgreSQL a batch first runs without waiting for each message's writes; if one of
        # them fails, it is rolled back whole and run again, each message's errors its own
        optimistic = self.runtime.engine.dialect.name == "postgresql"
        try:
            done = self._run_batch(fetched, parsed, optimistic=optimistic)
        except BatchNotSettled as exc:
            log_event(logging.DEBUG, "batch_run_again", account=self.account.name, error=str(exc.cause))
            done = self._run_batch(fetched, parsed, optimistic=False)
        # committed: only now is any of it reported, and acknowledged
        for ref, result, seconds in done:
            self._report(ref, result, seconds)
        if done:
            self.stats.batch_committed()
            self.after_commit(len(done))
        await self._acknowledge([ref for ref, _, _ in done])

    def _run_batch(
        self, fetched: _Fetched, parsed: list[Parsed | None] | None, *, optimistic: bool
    ) -> list[tuple[MessageRef, ProcessResult, float]]:
        """Process the batch's messages in one transaction, committed when it returns (see above)."""
        refs, raws = fetched.refs, fetched.raws
        done: list[tuple[MessageRef, ProcessResult, float]] = []
        keywords = self.runtime.pack_for(self.account).keywords  # read with these ahead, or read again
        # one commit for the batch (group commit), fenced by the account's lease
        with batch_transaction(self.runtime.engine, self.fence, optimistic=optimistic):
            if parsed:  # the ledger, the senders and their replies read for the whole batch at once
                messages = [p for p in parsed if isinstance(p, IncomingMessage)]
                look_up_ahead(self.account.name, [m.key for m in messages])
                senders = [m.from_address for m in messages if m.sender_ambiguity is None]
                look_up_senders(senders)
                look_up_recent_replies(senders, utcnow())
                look_up_our_messages(i for m in messages for i in (*m.in_reply_to, *m.references))
                look_up_targets(_subject(fetched, index, keywords) for index in range(len(refs)))
            for index, ref in enumerate(refs):
                if self.stop.is_set():  # finish the message in hand, begin no other
                    break
                raw = raws[index]
                if not optimistic:  # the batch keeps no message once processed (it may run again)
                    raws[index] = b""
                origin = f"{self.account.connector_type}:{ref.id}"
                started = time.perf_counter()
                result = process_message(
                    self.runtime,
                    self.account,
                    raw,
                    origin,
                    parsed=parsed[index] if parsed else None,
                    compressed_original=_original(fetched, index) if parsed else None,
                    subject=_subject(fetched, index, keywords) if parsed else None,
                )
                done.append((ref, result, time.perf_counter() - started))
                self.after_message()
        return done

    def _report(self, ref: MessageRef, result: ProcessResult, seconds: float) -> None:
        """One log line per message: INFO, or WARNING for a message quarantined."""
        self._outcomes[result.outcome] += 1
        self.stats.message_done(result.outcome, seconds)
        log_event(
            logging.WARNING if result.outcome == "quarantined" else logging.INFO,
            "processed",
            account=self.account.name,
            uid=ref.id,
            outcome=result.outcome,
            rule=result.rule,
            entity=result.entity,
            number=result.number,
            key=result.key,
            **({"reason": result.reason} if result.reason else {}),
        )

    async def _acknowledge(self, refs: Sequence[MessageRef]) -> None:
        if not refs:
            return
        connector = self.connector
        try:
            work = connector.acknowledge_many(refs) if len(refs) > 1 else connector.acknowledge(refs[0])
            await asyncio.wait_for(work, self.options.acknowledge_timeout)
        except Exception as exc:
            error = "no answer in time" if isinstance(exc, TimeoutError) else describe_error(exc)
            self.stats.acknowledge_failed(len(refs))
            for ref in refs:
                log_event(
                    logging.WARNING, "acknowledge_failed", account=self.account.name, uid=ref.id, error=error
                )

    # --- bookkeeping ------------------------------------------------------------------------------

    def _take_processed(self) -> int:
        processed = sum(self._outcomes.values())
        self._outcomes.clear()
        return processed

    def _passed(self) -> None:
        self._listed = False
        processed = self._take_processed()
        if self.failures:
            log_event(logging.WARNING, "recovered", account=self.account.name, after_failures=self.failures)
        self.failures = 0
        self.stats.passed()
        log_event(logging.INFO, "polled", account=self.account.name, processed=processed)
        unsaved, self.stats.unsaved_failure = self.stats.unsaved_failure, None
        if unsaved is not None:  # the outage kept it from the database: `mailgate status` shows it now
            self._record(record_failure, self.account.name, *unsaved)
        self._record(record_pass, self.account.name, processed)

    def _failed(self, exc: BaseException, retry_in: float | None) -> tuple[str, str]:
        self._listed = False
        auth = isinstance(exc, AuthenticationError)
        state = STATE_AUTH_FAILED if auth else STATE_RETRYING
        error = describe_error(exc)
        if isinstance(exc, TimeoutError):
            error = "no answer in time"
        self.stats.failed(state, error, retry_in)
        fields: dict[str, object] = {"account": self.account.name, "error": error}
        if retry_in is not None:
            fields["retry_in"] = retry_in
        if auth:
            log_event(logging.ERROR, "authentication_failed", **fields)
        elif isinstance(exc, ConnectorError | TimeoutError | DatabaseError):  # the world, not a bug
            log_event(logging.WARNING, "poll_failed", **fields)
        else:  # a bug in a connector: keep the traceback, still never stop the service
            log_event_with_traceback(logging.ERROR, "poll_failed", exc, **fields)
        retry_at = utcnow() + timedelta(seconds=retry_in) if retry_in is not None else None
        outage = isinstance(exc, DatabaseError)
        processed = self._take_processed()
        if not self._record(
            record_failure, self.account.name, state, error, processed, retry_at, outage=outage
        ):
            self.stats.unsaved_failure = (state, error, processed, None, utcnow())
        return state, error

    def _record(self, write: Callable[..., None], *args: object, outage: bool = False) -> bool:
        """Write the account's status (True if written); a database hiccup here is logged, never fatal.

        ``outage``: the failure being recorded is the database being away, already logged; that
        the status cannot be written then is the same outage, not another line.
        """
        try:
            write(self.runtime.engine, *args)
            return True
        except Exception as exc:
            away = database_away(exc)
            if not (away and outage):
                log_event(
                    logging.WARNING if away else logging.ERROR,
                    "status_not_saved",
                    account=self.account.name,
                    error=describe_error(exc),
                )
            return False

    # --- waiting ----------------------------------------------------------------------------------

    async def _guarded(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await a connector call, bounded by ``timeout`` and given up on a stop request."""
        work = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {work, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work}, timeout=5)
        if work in done:
            return work.result()
        if stopping in done:
            raise StopRequested
        raise TimeoutError

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or raise StopRequested as soon as the service is asked to stop."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return
        raise StopRequested

    async def _close(self, *, always: bool = False) -> None:
        if self.connected or always:
            self.connected = False
            try:
                await asyncio.wait_for(self.connector.close(), self.options.acknowledge_timeout)
            except Exception as exc:  # close must not raise; a broken one costs a log line
                log_event(
                    logging.WARNING, "close_failed", account=self.account.name, error=describe_error(exc)
                )
