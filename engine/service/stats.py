"""What each account's watcher has done since the service started: the figures behind ``/metrics``
and ``/healthz`` (``engine.service.metrics``, ``engine.service.health``).

Plain counters, kept by the watcher on the event loop at the cost of a lock and a few additions
per message; the HTTP server's thread reads them through ``AccountStats.snapshot``. Nothing here
touches the database or imports the Prometheus client: a service without ``service.http`` keeps
the same counters and never looks at them.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Engine

from engine.storage.status import STATE_OK

# upper bounds (seconds) of the processing-time histogram's buckets; one more bucket holds the rest
PROCESSING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATE_NEVER_POLLED = "never_polled"


@dataclass(frozen=True)
class AccountSnapshot:
    """One account's figures at one moment (times are Unix times, None for never)."""

    account: str
    poll_interval: float
    state: str
    outcomes: tuple[tuple[str, int], ...]
    bucket_counts: tuple[int, ...]  # per bucket of PROCESSING_BUCKETS, then the rest (not cumulative)
    processing_seconds: float
    fetch_errors: int
    acknowledge_errors: int
    consecutive_failures: int
    retry_delay: float  # the wait before the next attempt after the last failure (0 when ok)
    last_success: float | None  # the end of the last pass that handled everything waiting
    last_progress: float | None  # the last batch committed (a long backlog makes progress in between)
    last_error: str | None
    lease_held: bool = False  # this process holds the account's lease (works it) now

    @property
    def processed(self) -> int:
        """Messages handled (every outcome)."""
        return sum(count for _, count in self.outcomes)


class AccountStats:
    """One account's counters; written by its watcher only, read from any thread by ``snapshot``."""

    def __init__(self, account: str, poll_interval: float, last_success: float | None = None) -> None:
        self.account = account
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._outcomes: dict[str, int] = {}
        self._buckets = [0] * (len(PROCESSING_BUCKETS) + 1)
        self._seconds = 0.0
        self._fetch_errors = 0
        self._acknowledge_errors = 0
        self._state = STATE_NEVER_POLLED
        self._failures = 0
        self._retry_delay = 0.0
        self._last_success = last_success
        self._last_progress: float | None = None
        self._last_error: str | None = None
        self._lease_held = False
        # the last failure, when the database was too far away to keep it (the watcher writes it at
        # the recovery, so that `mailgate status` shows the outage); kept here, across watchers
        self.unsaved_failure: tuple[str, str, int, datetime | None, datetime] | None = None

    def lease(self, held: bool) -> None:
        """This process took (True) or gave up (False) the account's lease."""
        self._lease_held = held

    def message_done(self, outcome: str, seconds: float) -> None:
        """One message was handled with this outcome, in this many seconds."""
        with self._lock:
            self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
            self._buckets[bisect_left(PROCESSING_BUCKETS, seconds)] += 1
            self._seconds += seconds

    def batch_committed(self) -> None:
        """A batch was committed: the account is making progress, even within a long pass."""
        self._last_progress = time.time()

    def passed(self) -> None:
        """A pass reached the mailbox and handled everything waiting."""
        with self._lock:
            self._state, self._failures, self._retry_delay = STATE_OK, 0, 0.0
            self._last_success = time.time()

    def failed(self, state: str, error: str, retry_in: float | None) -> None:
        """A pass (or the connector itself) failed; the next attempt is in ``retry_in`` seconds."""
        with self._lock:
            self._state, self._last_error = state, error
            self._failures += 1
            self._fetch_errors += 1
            self._retry_delay = retry_in or 0.0

    def acknowledge_failed(self, count: int) -> None:
        """``count`` committed messages could not be deleted or moved."""
        with self._lock:
            self._acknowledge_errors += count

    def snapshot(self) -> AccountSnapshot:
        """The figures now, consistent with each other."""
        with self._lock:
            return AccountSnapshot(
                account=self.account,
                poll_interval=self.poll_interval,
                state=self._state,
                outcomes=tuple(sorted(self._outcomes.items())),
                bucket_counts=tuple(self._buckets),
                processing_seconds=self._seconds,
                fetch_errors=self._fetch_errors,
                acknowledge_errors=self._acknowledge_errors,
                consecutive_failures=self._failures,
                retry_delay=self._retry_delay,
                last_success=self._last_success,
                last_progress=self._last_progress,
                last_error=self._last_error,
                lease_held=self._lease_held,
            )


class WorkerCounts(Protocol):
    """How often the parse worker was started, failed, and was killed stuck (``ParseAhead``)."""

    starts: int
    failures: int
    stalls: int


@dataclass(frozen=True)
class Monitored:
    """Everything ``/metrics`` and ``/healthz`` look at in a running service."""

    accounts: tuple[AccountStats, ...]  # every active account: watched, or failed to start
    account_names: tuple[str, ...]  # every account in the config (the quarantine is counted for each)
    parse_worker: WorkerCounts
    engine: Engine
    started_at: float  # Unix time
