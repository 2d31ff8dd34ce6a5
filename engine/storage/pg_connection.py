"""The PostgreSQL connection whose every wait is bounded: ``GuardedConnection`` (see pg_guard).

Kept apart from ``engine.storage.pg_guard`` so that importing psycopg is paid only by a process
that uses PostgreSQL (``engine.storage.db`` imports this module when it makes such an engine).
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

from engine.storage.pg_guard import WATCH, time_limit_due

RV = TypeVar("RV")


def _given_up() -> psycopg.OperationalError:
    return psycopg.OperationalError("the database did not answer and the service is stopping")


class GuardedConnection(psycopg.Connection[Any]):
    """psycopg's connection with every wait for the server bounded by ``answer_seconds``."""

    answer_seconds: float = 60.0  # set on the subclass made for each engine (``guarded_connection``)

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> GuardedConnection:
        """Connect as psycopg does; while stopping, briefly, and at once refused once given up."""
        if WATCH.gave_up:
            raise _given_up()
        stop = WATCH.stop
        if stop is not None:  # libpq counts whole seconds, 2 at least
            kwargs["connect_timeout"] = min(
                int(kwargs.get("connect_timeout") or 2**31), max(2, round(stop[1]))
            )
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.OperationalError:
            if WATCH.stop is not None:  # a stop came, and the database does not even connect
                WATCH.gave_up = True
            raise

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """Wait as psycopg does, cut short after ``answer_seconds`` (see the module docstring)."""
        if WATCH.gave_up:
            self.close()
            raise _given_up()
        seconds, why = self.answer_seconds, f"no answer from the database in {self.answer_seconds:g} s"
        limit = time_limit_due()
        if limit is not None and limit < seconds:
            seconds, why = limit, "no answer from the database within the message's time limit"
        token = WATCH.add(self.pgconn.socket, seconds)
        try:
            result = super().wait(gen, interval, timeout)
        except BaseException as exc:
            cut = WATCH.remove(token)
            if cut or not isinstance(exc, Exception):  # half a request on the wire: never reuse it
                self.close()
            if cut:
                if WATCH.gave_up:
                    raise _given_up() from None
                raise psycopg.OperationalError(why) from None
            raise
        WATCH.remove(token)
        return result


def guarded_connection(answer_seconds: float) -> type[GuardedConnection]:
    """A ``GuardedConnection`` class whose waits last at most ``answer_seconds``."""
    return type("GuardedConnection", (GuardedConnection,), {"answer_seconds": answer_seconds})
