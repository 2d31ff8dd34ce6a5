"""``/healthz``: the database answers, and every account has polled lately.

Healthy (HTTP 200) when the database answers a trivial query within ``DATABASE_TIMEOUT`` seconds
and every account the service watches has had a successful poll (or, within a long backlog, a
committed batch) in the last ``POLL_LIMIT_INTERVALS`` × its ``poll_interval_seconds``, counted from
the service's start for an account not polled since; an account whose connector cannot be built is
unhealthy at once. Else 503. Either way the body is JSON with the reasons, so that the check
answers while the database is down: what the accounts did is known in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.service.stats import AccountSnapshot
from engine.storage.status import STATE_FAILED

T = TypeVar("T")

DATABASE_TIMEOUT = 5.0  # seconds a check waits for the database
POLL_LIMIT_INTERVALS = 3  # an account is late after this many poll intervals without a good poll


class DatabaseSlow(Exception):
    """The database did not answer in time."""


class BoundedCalls:
    """Runs database work in a thread of its own and waits for it at most ``timeout`` seconds.

    A connect to a database host that does not answer can take minutes; the HTTP answer must not.
    Work that overruns is abandoned, not interrupted: its thread (a daemon) ends when the database
    answers or the process exits. At most ``max_pending`` are left running; beyond that a call
    fails at once instead of starting another thread. Never raises anything but the work's own
    exception or ``DatabaseSlow``; the thread never lets an exception escape.
    """

    def __init__(self, timeout: float = DATABASE_TIMEOUT, max_pending: int = 2) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    def call(self, work: Callable[[], T]) -> T:
        """``work()``, or DatabaseSlow if it has not returned within the timeout."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise DatabaseSlow(f"the database has not answered the last {self._pending} checks")
            self._pending += 1
        outcome: Future[T] = Future()

        def run() -> None:
            try:
                outcome.set_result(work())
            except BaseException as exc:  # handed to the caller, never left to escape the thread
                outcome.set_exception(exc)
            finally:
                with self._lock:
                    self._pending -= 1

        threading.Thread(target=run, name="mailgate-database-check", daemon=True).start()
        try:
            return outcome.result(self.timeout)
        except FutureTimeout:
            raise DatabaseSlow(f"the database did not answer within {self.timeout:g} s") from None


def iso_time(moment: float | None) -> str | None:
    """A Unix time as ``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_problem(account: AccountSnapshot, started_at: float, now: float) -> str | None:
    """Why the account is unhealthy, or None if it is not (see the module)."""
    if account.state == STATE_FAILED:  # its connector cannot be built: it will not poll until a restart
        return f"account {account.account!r} cannot be watched: {account.last_error}"
    limit = POLL_LIMIT_INTERVALS * account.poll_interval
    since = max(account.last_success or 0.0, account.last_progress or 0.0, started_at)
    if now - since <= limit:
        return None
    last = iso_time(account.last_success) or "never"
    why = f"; {account.state}: {account.last_error}" if account.last_error else ""
    return (
        f"account {account.account!r} has not polled successfully for {now - since:.0f} s "
        f"(limit {limit:g} s, {POLL_LIMIT_INTERVALS} × poll_interval_seconds; last good poll {last}){why}"
    )


@dataclass(frozen=True)
class HealthReport:
    """The answer of ``/healthz``: healthy or not, and the JSON body saying why."""

    healthy: bool
    body: dict[str, Any]


def check_health(
    accounts: Sequence[AccountSnapshot], started_at: float, database_problem: str | None, now: float
) -> HealthReport:
    """Judge the service from its accounts' figures and the database check (None: it answered)."""
    reasons = [f"database: {database_problem}"] if database_problem else []
    states: dict[str, dict[str, Any]] = {}
    for account in accounts:
        problem = account_problem(account, started_at, now)
        if problem:
            reasons.append(problem)
        states[account.account] = {
            "healthy": problem is None,
            "state": account.state,
            "last_poll": iso_time(account.last_success),
            "last_error": account.last_error,
        }
    body = {
        "status": "unhealthy" if reasons else "ok",
        "reasons": reasons,
        "database": database_problem or "ok",
        "accounts": states,
    }
    return HealthReport(not reasons, body)
