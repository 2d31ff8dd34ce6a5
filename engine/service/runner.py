"""The service: every active account watched at once, the outbox drained beside them, clean stops.

``serve(runtime, once=...)`` is what ``mailgate run`` calls. Each active account gets its own
``AccountWatcher`` task, so a slow or broken mailbox only ever delays itself. SIGTERM and SIGINT
ask every watcher to stop: the message in hand is finished (committed and acknowledged), waits
are cut short, and ``serve`` returns. A second signal stops at once; that is still safe, since a
committed message that was not acknowledged is a no-op (``duplicate``) next time.

Beside the watchers, a running service writes its heartbeat (``mailgate status`` reads it) and,
where ``service.http`` (or ``--http``) says so, serves ``/metrics`` and ``/healthz``
(``engine.service.http``, in a thread of its own, stopped with the service).

Longer than 400 lines because ``Service`` is one lifecycle whose parts share its state: the
watchers and their leases (``engine.service.pool``), the heartbeat, the outbox loop and the
hourly purge all start, fail and stop together with it; the pieces that stand alone (leases,
pool, parsing, monitoring, signals for tests) are modules of their own already.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.base import Connector
from connectors.registry import make_connector
from engine.config.model import AccountConfig
from engine.config.service import ListenAddress
from engine.errors import MailgateError
from engine.runtime import Runtime
from engine.service.events import log_event
from engine.service.leases import TERM_SHARE, LeaseKeeper
from engine.service.options import ServiceOptions
from engine.service.parsing import ParseAhead
from engine.service.pool import Fence, WatcherPool
from engine.service.single import only_service
from engine.service.stats import AccountStats, Monitored
from engine.service.test_hooks import (
    TEST_SIGNAL_AFTER_COMMIT_ENV,
    TEST_SIGNAL_AFTER_MESSAGE_ENV,
    signal_after_count,
)
from engine.service.watcher import AccountWatcher, PassReport, database_away, describe_error
from engine.stop_signal import held_stop_signal
from engine.storage.db import DatabaseError
from engine.storage.models import utcnow
from engine.storage.originals import originals_file_of, purge_expired_originals
from engine.storage.pg_guard import lift_wait_limit, limit_waits
from engine.storage.retention import purge_sent_outbox
from engine.storage.status import (
    STATE_FAILED,
    STATE_HELD,
    account_statuses,
    record_failure,
    record_heartbeat,
    record_stopped,
)

if TYPE_CHECKING:
    from engine.service.http import MonitoringServer

ConnectorFactory = Callable[[AccountConfig, Path], Connector]
OutboxDrainer = Callable[[Runtime], Awaitable[object]]

# Issue 4's sender, ``async def drain_outbox(runtime)``: the service calls it every
# ``outbox_interval`` seconds and soon after each commit, in a task of its own. It is looked up
# when the service starts; where it is not installed the outbox is left alone (``mailgate outbox``
# still lists it) and the service says so once (``event=outbox_hook_absent``).
OUTBOX_HOOK = ("engine.outgoing.delivery", "drain_outbox")
ORIGINALS_PURGE_INTERVAL = 3600.0  # seconds between two purges of expired originals

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# once a stop is requested, a wait for the database lasts this long at most (engine/storage/pg_guard.py)
STOP_DATABASE_SECONDS = 3.0


class StopEvent(asyncio.Event):
    """The service's stop event, also set at once by a signal (``signalled``).

    A signal handler runs in the main thread as soon as the signal arrives, between two bytecodes,
    so it may only set a flag; ``request_stop`` then runs on the loop. ``signalled`` makes
    ``is_set`` true in between, so that a watcher working through a fetched batch sees the stop
    before it begins its next message, not one message later.
    """

    signalled = False

    def is_set(self) -> bool:
        """True once a stop was requested (or signalled)."""
        return self.signalled or super().is_set()


def default_connector(account: AccountConfig, base_dir: Path) -> Connector:
    """The connector the account's ``connector:`` mapping names."""
    return make_connector(account.name, account.connector, base_dir)


def find_outbox_drainer() -> OutboxDrainer | None:
    """Issue 4's ``drain_outbox`` if it is installed, else None (then the outbox is left alone)."""
    module_name, attribute = OUTBOX_HOOK
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            return None
        log_event(logging.ERROR, "outbox_unavailable", error=describe_error(exc))
        return None
    except Exception as exc:
        log_event(logging.ERROR, "outbox_unavailable", error=describe_error(exc))
        return None
    drain = getattr(module, attribute, None)
    return drain if callable(drain) else None


class Service:
    """Watches a runtime's active accounts; ``run`` until stopped, or ``run_once``."""

    def __init__(
        self,
        runtime: Runtime,
        options: ServiceOptions | None = None,
        *,
        connector_factory: ConnectorFactory = default_connector,
        outbox_drainer: OutboxDrainer | None = None,
        after_commit: Callable[[int], None] | None = None,
        after_message: Callable[[int], None] | None = None,
        http: ListenAddress | None = None,
    ) -> None:
        self.runtime = runtime
        self.http = http  # where to serve /metrics and /healthz while running (None: nowhere)
        self.options = options or ServiceOptions()
        self.connector_factory = connector_factory
        self.outbox_drainer = outbox_drainer
        self._next_purge = 0.0
        self.stop_event = StopEvent()
        # a worker process, started at a first backlog
        self.parser = ParseAhead(
            runtime.our_addresses,
            runtime.config.time_limit_seconds,
            keep_originals=runtime.config.keep_originals_days > 0,
            originals_file=originals_file_of(runtime.engine),
        )
        self._stop_requested = False
        self._outbox_wanted = asyncio.Event()
        self._test_hook = after_commit or (lambda count: None)
        self._test_message_hook = after_message or (lambda count: None)
        self._tasks: list[asyncio.Task[None]] = []
        self._unusable_stats: list[AccountStats] = []
        self.monitored: Monitored | None = None  # what /metrics and /healthz read, once running
        self.http_port: int | None = None  # the port /metrics is served on, once running
        self.pool: WatcherPool | None = None  # the watchers of the accounts this process holds

    def request_stop(self, signum: int | None = None) -> None:
        """Stop after the message in hand; a second request cancels everything at once."""
        how = signal.Signals(signum).name if signum else "request"
        if self._stop_requested:
            log_event(logging.WARNING, "stopping_now", signal=how)
            for task in self._tasks:
                task.cancel()
            return
        self._stop_requested = True
        limit_waits(STOP_DATABASE_SECONDS)
        log_event(logging.INFO, "stopping", signal=how)
        self.stop_event.set()
        if self.pool is not None:
            self.pool.stop_all()

    def handle_signals(self) -> Callable[[], None]:
        """Stop on SIGTERM and SIGINT (call on the loop, in the main thread); returns the undo.

        The handler flags the stop at once and requests it on the loop (see ``StopEvent``).
        """
        loop = asyncio.get_running_loop()

        def received(signum: int, _frame: object) -> None:
            self.stop_event.signalled = True
            limit_waits(STOP_DATABASE_SECONDS)  # the loop may be stuck waiting for the database
            loop.call_soon_threadsafe(self.request_stop, signum)

        previous = {signum: signal.signal(signum, received) for signum in STOP_SIGNALS}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    async def run(self) -> None:
        """Watch this process's share of the active accounts until ``request_stop``.

        The share is kept by a ``WatcherPool`` under leases (see docs/scaling.md); a failure never
        ends the service early.
        """
        connectors, unusable = self._connectors()
        if not connectors:
            raise MailgateError(self._nothing_to_watch(unusable))
        config = self.runtime.config
        last_polls = self._last_polls()
        stats = {
            name: AccountStats(name, account.poll_interval_seconds, _unix_time(last_polls.get(name)))
            for name, (account, _) in connectors.items()
        }
        self.monitored = Monitored(
            accounts=tuple(stats.values()) + tuple(self._unusable_stats),
            account_names=tuple(a.name for a in config.accounts),
            parse_worker=self.parser,
            engine=self.runtime.engine,
            started_at=time.time(),
        )
        server = self._serve_http(self.monitored)  # refuses to start if it cannot listen

        def make_watcher(name: str, stop: asyncio.Event, fence: Fence) -> AccountWatcher:
            account, connector = connectors[name]
            return self._watcher(account, connector, stop, stats[name], fence)

        self.pool = WatcherPool(
            self._keeper(list(connectors)), make_watcher, self.stop_event, self._tasks.append
        )
        log_event(logging.INFO, "service_started", accounts=",".join(connectors))
        core = [asyncio.create_task(self.pool.run(), name="leases")]
        core.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        if self.outbox_drainer is not None:
            core.append(asyncio.create_task(self._outbox_loop(self.outbox_drainer), name="outbox"))
        else:
            log_event(logging.INFO, "outbox_hook_absent", hook=".".join(OUTBOX_HOOK))
        self._tasks.extend(core)
        try:
            results = await asyncio.gather(*core, return_exceptions=True)
        finally:
            self.parser.close()
            if server is not None:
                server.stop()
            others_within = config.service.lease_seconds * TERM_SHARE  # processes still sharing the accounts
            self._save(record_stopped, socket.gethostname(), os.getpid(), others_within)
            lift_wait_limit()  # stopped: this process may use the database as before (tests do)
        for task, result in zip(core, results, strict=True):
            if isinstance(result, Exception):
                log_event(logging.ERROR, "task_failed", task=task.get_name(), error=describe_error(result))
        log_event(logging.INFO, "service_stopped")

    async def run_once(self) -> list[PassReport]:
        """One pass over every active account no other process holds, then one outbox drain.

        A report per account; one held by another running process is skipped (``STATE_HELD``).
        """
        connectors, unusable = self._connectors()
        if not connectors and not unusable:
            raise MailgateError(self._nothing_to_watch(unusable))
        keeper = self._keeper(list(connectors))
        held: dict[str, int | None]
        try:
            await asyncio.to_thread(keeper.start)
            held = dict(await asyncio.to_thread(keeper.claim_free))
        except Exception as exc:
            if not keeper.exclusive:
                raise DatabaseError(f"database unavailable: {getattr(exc, 'orig', None) or exc}") from None
            held = dict.fromkeys(connectors)  # SQLite's file lock already makes this the only process
        reports = list(unusable)
        try:
            watchers = []
            for name, (account, connector) in connectors.items():
                if name not in held:
                    log_event(logging.WARNING, "account_held_elsewhere", account=name)
                    reports.append(PassReport(name, 0, (), None, STATE_HELD))
                    continue
                stats = AccountStats(name, account.poll_interval_seconds)
                token = held[name]
                fence = None if token is None else keeper.fence_for(name, token)
                watchers.append(self._watcher(account, connector, self.stop_event, stats, fence))
            with keeper.renewing():  # a long backlog outlasts a lease's term
                reports += list(await asyncio.gather(*(w.one_pass() for w in watchers)))
        finally:
            self.parser.close()
            try:
                await asyncio.to_thread(keeper.retire)
            except Exception as exc:  # they expire on their own within lease_seconds
                log_event(logging.WARNING, "leases_not_released", error=describe_error(exc))
        if self.outbox_drainer is not None and not self.stop_event.is_set():
            await self._drain(self.outbox_drainer)
        lift_wait_limit()
        order = {a.name: i for i, a in enumerate(self.runtime.config.accounts)}
        return sorted(reports, key=lambda r: order.get(r.account, len(order)))

    # --- internals ----------------------------------------------------------------------------------

    def _nothing_to_watch(self, unusable: list[PassReport]) -> str:
        if unusable:
            return "no account can be watched: " + "; ".join(f"{r.account}: {r.error}" for r in unusable)
        return f"no active account in {self.runtime.config.path}: nothing to watch"

    def _serve_http(self, monitored: Monitored) -> MonitoringServer | None:
        """Start serving /metrics and /healthz where configured (the Prometheus client is imported here)."""
        if self.http is None:
            return None
        from engine.service.http import MonitoringServer

        server = MonitoringServer(self.http, monitored)
        server.start()
        self.http_port = server.port
        log_event(logging.INFO, "http_started", address=str(self.http), port=server.port)
        return server

    async def _heartbeat_loop(self) -> None:
        """Write the heartbeat now and every ``service.heartbeat_seconds`` until the service stops."""
        interval = self.runtime.config.service.heartbeat_seconds
        started, host, pid = utcnow(), socket.gethostname(), os.getpid()
        while not self.stop_event.is_set():
            self._save(record_heartbeat, host, pid, started, interval)
            try:
                await asyncio.wait_for(self.stop_event.wait(), interval)
            except TimeoutError:
                continue

    def _save(self, write: Callable[..., None], *args: object) -> None:
        """Write the heartbeat (or the stop); a database hiccup here is logged, never fatal."""
        try:
            write(self.runtime.engine, *args)
        except Exception as exc:
            log_event(logging.WARNING, "heartbeat_not_saved", error=describe_error(exc))

    def _last_polls(self) -> dict[str, datetime]:
        """When each account was last polled, as stored (for /metrics from the start); {} on failure."""
        try:
            stored = account_statuses(self.runtime.engine)
        except Exception as exc:
            log_event(logging.WARNING, "status_not_read", error=describe_error(exc))
            return {}
        return {name: row.last_poll_at for name, row in stored.items() if row.last_poll_at is not None}

    def _keeper(self, accounts: list[str]) -> LeaseKeeper:
        """The lease keeper for these accounts (SQLite: this process is the only one, see ``single``)."""
        lease_seconds = self.runtime.config.service.lease_seconds
        exclusive = self.runtime.engine.dialect.name == "sqlite"
        return LeaseKeeper(self.runtime.engine, accounts, lease_seconds, exclusive=exclusive)

    def _connectors(self) -> tuple[dict[str, tuple[AccountConfig, Connector]], list[PassReport]]:
        """Each active account's connector by name; a report for each whose connector cannot be made."""
        usable: dict[str, tuple[AccountConfig, Connector]] = {}
        unusable: list[PassReport] = []
        self._unusable_stats = []
        for account in self.runtime.config.accounts:
            if not account.active:
                continue
            try:
                connector = self.connector_factory(account, self.runtime.config.base_dir)
            except Exception as exc:  # e.g. the ews extra is not installed: that account only
                error = describe_error(exc)
                log_event(logging.ERROR, "account_unusable", account=account.name, error=error)
                try:
                    record_failure(self.runtime.engine, account.name, STATE_FAILED, error, 0, None)
                except Exception as db_exc:
                    log_event(logging.ERROR, "status_not_saved", error=describe_error(db_exc))
                unusable.append(PassReport(account.name, 0, (), error, STATE_FAILED))
                stats = AccountStats(account.name, account.poll_interval_seconds)
                stats.failed(STATE_FAILED, error, None)
                self._unusable_stats.append(stats)
                continue
            usable[account.name] = (account, connector)
        return usable, unusable

    def _watcher(
        self,
        account: AccountConfig,
        connector: Connector,
        stop: asyncio.Event,
        stats: AccountStats,
        fence: Fence | None,
    ) -> AccountWatcher:
        return AccountWatcher(
            self.runtime,
            account,
            connector,
            self.options,
            stop,
            self._after_commit,
            self.parser,
            lambda: self._test_message_hook(1),
            stats,
            fence,
        )

    def _after_commit(self, committed: int) -> None:
        self._outbox_wanted.set()
        self._test_hook(committed)

    async def _outbox_loop(self, drain: OutboxDrainer) -> None:
        while not self.stop_event.is_set():
            wanted = asyncio.ensure_future(self._outbox_wanted.wait())
            stopping = asyncio.ensure_future(self.stop_event.wait())
            try:
                await asyncio.wait(
                    {wanted, stopping},
                    timeout=self.options.outbox_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                wanted.cancel()
                stopping.cancel()
            if self.stop_event.is_set():
                return
            self._outbox_wanted.clear()
            await self._drain(drain)  # not interrupted by a stop: a message being sent is finished

    async def _drain(self, drain: OutboxDrainer) -> None:
        try:
            await drain(self.runtime)
        except Exception as exc:
            away = database_away(exc)
            log_event(logging.WARNING if away else logging.ERROR, "outbox_failed", error=describe_error(exc))
        self._purge_originals()

    def _purge_originals(self) -> None:
        """Drop expired originals and old sent messages, at most once an hour (beside the outbox drain)."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + ORIGINALS_PURGE_INTERVAL
        config = self.runtime.config
        now = utcnow()
        try:
            dropped = purge_expired_originals(self.runtime.engine, config.keep_originals_days, now)
            sent = 0
            if config.keep_sent_days > 0:
                sent = purge_sent_outbox(self.runtime.engine, now - timedelta(days=config.keep_sent_days))
        except Exception as exc:  # the database is away: the next drain tries again
            self._next_purge = 0.0
            log_event(logging.WARNING, "originals_not_purged", error=describe_error(exc))
            return
        if dropped:
            log_event(logging.INFO, "originals_purged", count=dropped, days=config.keep_originals_days)
        if sent:
            log_event(logging.INFO, "sent_messages_purged", count=sent, days=config.keep_sent_days)


def _unix_time(moment: datetime | None) -> float | None:
    """A stored moment (UTC, with or without a zone) as a Unix time."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def serve(
    runtime: Runtime,
    *,
    once: bool,
    options: ServiceOptions | None = None,
    http: ListenAddress | None = None,
) -> list[PassReport]:
    """Run the service with SIGTERM/SIGINT handled (``mailgate run``); ``once``: one pass, reports.

    ``http``: where to serve /metrics and /healthz (not with ``once``); None: ``service.http``.
    """

    async def main() -> list[PassReport]:
        service = Service(
            runtime,
            options,
            outbox_drainer=find_outbox_drainer(),
            after_commit=signal_after_count(os.environ.get(TEST_SIGNAL_AFTER_COMMIT_ENV)),
            after_message=signal_after_count(os.environ.get(TEST_SIGNAL_AFTER_MESSAGE_ENV)),
            http=http or runtime.config.service.http,
        )
        restore_signals = service.handle_signals()
        early = held_stop_signal()  # a SIGTERM during start-up stops the service as any other
        if early is not None:
            service.request_stop(early)
        try:
            if once:
                return await service.run_once()
            await service.run()
            return []
        finally:
            restore_signals()
            lift_wait_limit()

    with only_service(runtime.engine):  # SQLite: one service per database file
        return asyncio.run(main())
