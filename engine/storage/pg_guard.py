"""PostgreSQL connections that never hang: a client-side limit on every wait for the server.

The server's ``statement_timeout`` ends a statement that runs too long, and TCP keepalives with
``tcp_user_timeout`` notice a peer that is gone, but neither helps when the server (or a middlebox
in between) accepts bytes and never answers: a black hole. So every round trip on a connection
made by ``engine.storage.pg_connection`` (``GuardedConnection``, psycopg's ``Connection`` with its
``wait`` watched; apart, so that only a process using PostgreSQL imports psycopg) is given
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


WATCH = _Watch()


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
    if WATCH.stop is None:
        WATCH.stop = (time.monotonic(), seconds)


def lift_wait_limit() -> None:
    """Forget ``limit_waits`` (the service has stopped; its process may use the database again)."""
    WATCH.stop = None
    WATCH.gave_up = False


def time_limit_due() -> float | None:
    """Seconds until the per-message time limit (engine.timelimit) fires, if it is armed here.

    The limit is a SIGALRM, and a signal that fires while the driver waits is not always raised
    where it should be (the wait may then go on until the answer comes): so a wait under the limit
    is cut by the watchdog when the limit is due, like any overdue wait.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    due, _ = signal.getitimer(signal.ITIMER_REAL)
    return due + LIMIT_SLACK_SECONDS if due > 0 else None
