"""PostgreSQL connections that never hang: a client-side limit on every wait for the server.

The server's ``statement_timeout`` ends a statement that runs too long, and TCP keepalives with
``tcp_user_timeout`` notice a peer that is gone, but neither helps when the server (or a middlebox
in between) accepts bytes and never answers: a black hole. So every round trip on a connection
made here (``GuardedConnection``, psycopg's ``Connection`` with its ``wait`` watched) is given
``answer_seconds``; a watchdog thread cuts the socket of a wait that outlives it (``shutdown``:
the driver sees the connection lost, SQLAlchemy discards it), and the wait raises an
``OperationalError`` naming the limit, which ``engine.storage.failures.is_outage`` counts as an
outage (the service backs off and retries; nothing of the batch was kept).

- A stop (``limit_waits``, called by the service on SIGTERM) gives every wait, in flight or to
  come, a few seconds at most, and a new connection as long; once one was cut (or a connection
  failed) during the stop, later waits and connections fail at once,
  so that a stop never waits long for a database that does not answer (one that answers is not
  hurried: its waits take milliseconds).
- An exception that is not an error (the per-message time limit, ``ProcessingTimeout``, raised
  by a signal inside the driver) leaves a request half done on the connection: it is closed, so
  that it is never used again ("another command is already in progress"). Since that signal is
  not always raised out of the driver's wait, a wait under the time limit is also cut when the
  limit is due.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

RV = TypeVar("RV")
WATCH_INTERVAL = 0.2  # how often the watchdog looks at the waits in flight
LIMIT_SLACK_SECONDS = 0.1  # a wait under the time limit is cut this long after the limit is due


class _Watch:
    """The waits in flight (socket, deadline) and the watchdog thread that cuts overdue ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waits: dict[int, tuple[int, float, float]] = {}  # token -> (socket fd, deadline, start)
        self.cut: set[int] = set()
        self.stop: tuple[float, float] | None = None  # (when, seconds): set by limit_waits
        self.gave_up = False  # a wait was cut because of a stop: fail at once from now on
        self._next = 0
        self._thread: threading.Thread | None = None

    def add(self, fd: int, seconds: float) -> int:
        now = time.monotonic()
        with self.lock:
            self._next += 1
            self.waits[self._next] = (fd, now + seconds, now)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mailgate pg watchdog", daemon=True)
                self._thread.start()
            return self._next

    def remove(self, token: int) -> bool:
        """Forget a wait; True if the watchdog cut it."""
        with self.lock:
            self.waits.pop(token, None)
            if token in self.cut:
                self.cut.discard(token)
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            with self.lock:  # the fd stays the connection's while its wait is registered
                stop = self.stop
                for token, (fd, deadline, started) in list(self.waits.items()):
                    if token in self.cut:
                        continue
                    stopping = stop is not None and now >= max(started, stop[0]) + stop[1]
                    if now >= deadline or stopping:
                        self.gave_up = self.gave_up or stopping
                        self.cut.add(token)
                        _shut_down(fd)


_WATCH = _Watch()


def _shut_down(fd: int) -> None:
    """End the connection on ``fd`` both ways, so that a wait on it returns at once."""
    try:
        duplicate = os.dup(fd)
    except OSError:
        return
    with socket.socket(fileno=duplicate) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def limit_waits(seconds: float) -> None:
    """From now on, no wait for the database lasts more than ``seconds`` (the service is stopping).

    A wait in flight gets ``seconds`` from now. Safe to call from a signal handler: it only sets
    a value the watchdog reads.
    """
    if _WATCH.stop is None:
        _WATCH.stop = (time.monotonic(), seconds)


def lift_wait_limit() -> None:
    """Forget ``limit_waits`` (the service has stopped; its process may use the database again)."""
    _WATCH.stop = None
    _WATCH.gave_up = False


def _time_limit_due() -> float | None:
    """Seconds until the per-message time limit (engine.timelimit) fires, if it is armed here.

    The limit is a SIGALRM, and a signal that fires while the driver waits is not always raised
    where it should be (the wait may then go on until the answer comes): so a wait under the limit
    is cut by the watchdog when the limit is due, like any overdue wait.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    due, _ = signal.getitimer(signal.ITIMER_REAL)
    return due + LIMIT_SLACK_SECONDS if due > 0 else None


def _given_up() -> psycopg.OperationalError:
    return psycopg.OperationalError("the database did not answer and the service is stopping")


class GuardedConnection(psycopg.Connection[Any]):
    """psycopg's connection with every wait for the server bounded by ``answer_seconds``."""

    answer_seconds: float = 60.0  # set on the subclass made for each engine (``guarded_connection``)

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> GuardedConnection:
        """Connect as psycopg does; while stopping, briefly, and at once refused once given up."""
        if _WATCH.gave_up:
            raise _given_up()
        stop = _WATCH.stop
        if stop is not None:  # libpq counts whole seconds, 2 at least
            kwargs["connect_timeout"] = min(
                int(kwargs.get("connect_timeout") or 2**31), max(2, round(stop[1]))
            )
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError:
            if _WATCH.stop is not None:  # a stop came, and the database does not even connect
                _WATCH.gave_up = True
            raise

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """Wait as psycopg does, cut short after ``answer_seconds`` (see the module docstring)."""
        if _WATCH.gave_up:
            self.close()
            raise _given_up()
        seconds, why = self.answer_seconds, f"no answer from the database in {self.answer_seconds:g} s"
        limit = _time_limit_due()
        if limit is not None and limit < seconds:
            seconds, why = limit, "no answer from the database within the message's time limit"
        token = _WATCH.add(self.pgconn.socket, seconds)
        try:
            result = super().wait(gen, interval, timeout)
        except BaseException as exc:
            cut = _WATCH.remove(token)
            if cut or not isinstance(exc, Exception):  # half a request on the wire: never reuse it
                self.close()
            if cut:
                if _WATCH.gave_up:
                    raise _given_up() from None
                raise psycopg.OperationalError(why) from None
            raise
        _WATCH.remove(token)
        return result


def guarded_connection(answer_seconds: float) -> type[GuardedConnection]:
    """A ``GuardedConnection`` class whose waits last at most ``answer_seconds``."""
    return type("GuardedConnection", (GuardedConnection,), {"answer_seconds": answer_seconds})
