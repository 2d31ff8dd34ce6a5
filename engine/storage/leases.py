"""Account leases: which ``mailgate run`` process works which account, held in the database.

Two tables. ``ServiceWorker`` has one row per running process (its id, host, pid), whose
``beat_at`` it rewrites while it lives; ``AccountLease`` has one row per account, naming the
process that holds it, until when, and a fencing ``token`` that grows by one at every claim.
Every time is the database's clock (PostgreSQL's ``now()``), so the hosts' clocks never matter;
on SQLite (one process only, see ``engine.service.single``) it is this process's clock.

A lease is claimed only when it is free or expired, renewed only by its holder before it
expires, and checked inside every batch's transaction (``fence``): the check takes a key-share
lock on the lease row, so a takeover (which locks the row FOR UPDATE) waits for that transaction
to end, and a process whose lease was
taken (or ran out) commits nothing. See docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, delete, func, literal, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel, col

from engine.errors import MailgateError
from engine.storage.models import utcnow


class ServiceWorker(SQLModel, table=True):
    """One running ``mailgate run`` process; alive while ``beat_at`` is recent."""

    id: str = Field(primary_key=True)  # random, new at every start
    host: str = ""
    pid: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    beat_at: datetime = Field(default_factory=utcnow)


class AccountLease(SQLModel, table=True):
    """Which process works an account (``holder``: a ``ServiceWorker`` id; None: nobody), until when."""

    account: str = Field(primary_key=True)
    holder: str | None = None
    host: str | None = None
    pid: int | None = None
    token: int = 0  # the fencing token: one more at every claim
    acquired_at: datetime | None = None
    expires_at: datetime | None = None


class LeaseLost(MailgateError):
    """This process no longer holds the account's lease: its batch is not committed."""


@dataclass(frozen=True)
class Worker:
    """This process as the lease tables name it."""

    id: str
    host: str
    pid: int


@dataclass(frozen=True)
class Holder:
    """Who holds an account's lease and since when (``mailgate status``)."""

    account: str
    host: str
    pid: int
    since: datetime
    expires_at: datetime


def _now(connection: Connection, plus: float = 0.0) -> Any:
    """The database's clock (plus ``plus`` seconds) as a SQL expression; this process's on SQLite."""
    if connection.dialect.name == "postgresql":
        return func.now() + timedelta(seconds=plus) if plus else func.now()
    return literal(utcnow() + timedelta(seconds=plus), DateTime(timezone=True))


def _insert(connection: Connection) -> Any:
    if connection.dialect.name == "postgresql":
        # imported here: SQLAlchemy's PostgreSQL dialect is a fiftieth of every SQLite start-up
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    return sqlite_insert


def register_worker(engine: Engine, worker: Worker, accounts: Iterable[str]) -> None:
    """Write this process's worker row, and a (free) lease row for every account that has none."""
    with engine.begin() as connection:
        now = _now(connection)
        connection.execute(
            _insert(connection)(ServiceWorker).values(
                id=worker.id, host=worker.host, pid=worker.pid, started_at=now, beat_at=now
            )
        )
        rows = [{"account": name, "token": 0} for name in accounts]
        if rows:
            connection.execute(_insert(connection)(AccountLease).values(rows).on_conflict_do_nothing())


@dataclass(frozen=True)
class Renewed:
    """What a beat found: the leases still held (with their tokens) and the live workers."""

    held: dict[str, int]
    live: list[str]  # the workers that beat within the last term (this one included), sorted
    next_death: float | None  # seconds until the first other live worker drops out if it stops beating


def beat_and_renew(engine: Engine, worker: Worker, term: float) -> Renewed:
    """Beat, and renew every unexpired lease this process holds for ``term`` seconds."""
    with engine.begin() as connection:
        now, later = _now(connection), _now(connection, term)
        connection.execute(
            update(ServiceWorker).where(col(ServiceWorker.id) == worker.id).values(beat_at=now)
        )
        renewed = connection.execute(
            update(AccountLease)
            .where(col(AccountLease.holder) == worker.id, col(AccountLease.expires_at) > now)
            .values(expires_at=later)
            .returning(col(AccountLease.account), col(AccountLease.token))
        ).all()
        clock = _naive(connection.execute(select(_now(connection))).scalar_one())
        live = connection.execute(
            select(col(ServiceWorker.id), col(ServiceWorker.beat_at)).where(
                col(ServiceWorker.beat_at) > _now(connection, -term)
            )
        ).all()
    deaths = [(_naive(beat) - clock).total_seconds() + term for wid, beat in live if wid != worker.id]
    workers = sorted({wid for wid, _ in live} | {worker.id})
    return Renewed(dict(renewed), workers, max(min(deaths), 0.0) if deaths else None)


def _naive(moment: datetime) -> datetime:
    """A moment in UTC without a zone (PostgreSQL answers with one, SQLite without)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def claim(engine: Engine, worker: Worker, account: str, term: float, *, force: bool = False) -> int | None:
    """Take the account's lease if it is free or expired (any holder's with ``force``); its new token."""
    with engine.begin() as connection:
        # FOR UPDATE waits for a batch of this account that holds the fence's lock (and conflicts
        # with nothing else: the holder's own renewals pass the fence's FOR KEY SHARE)
        connection.execute(
            select(col(AccountLease.account)).where(col(AccountLease.account) == account).with_for_update()
        )
        now = _now(connection)
        free = or_(col(AccountLease.holder).is_(None), col(AccountLease.expires_at) <= now)
        taken = connection.execute(
            update(AccountLease)
            .where(col(AccountLease.account) == account, *(() if force else (free,)))
            .values(
                holder=worker.id,
                host=worker.host,
                pid=worker.pid,
                token=col(AccountLease.token) + 1,
                acquired_at=now,
                expires_at=_now(connection, term),
            )
            .returning(col(AccountLease.token))
        ).scalar()
    return None if taken is None else int(taken)


def seconds_to_expiry(engine: Engine, accounts: Iterable[str]) -> float | None:
    """Seconds until the first of these accounts' leases runs out (0 if one has); None: no lease."""
    with engine.connect() as connection:
        clock = _naive(connection.execute(select(_now(connection))).scalar_one())
        ends = connection.execute(
            select(col(AccountLease.expires_at)).where(
                col(AccountLease.account).in_(list(accounts)), col(AccountLease.holder).is_not(None)
            )
        ).scalars()
        left = [(_naive(end) - clock).total_seconds() for end in ends if end is not None]
    return max(min(left), 0.0) if left else None


def release(engine: Engine, worker: Worker, leases: dict[str, int]) -> None:
    """Give the accounts' leases back at once (each only if still this process's, with that token)."""
    if not leases:
        return
    with engine.begin() as connection:
        for account, token in leases.items():
            connection.execute(
                update(AccountLease)
                .where(
                    col(AccountLease.account) == account,
                    col(AccountLease.holder) == worker.id,
                    col(AccountLease.token) == token,
                )
                .values(holder=None, host=None, pid=None, expires_at=_now(connection))
            )


def retire_worker(engine: Engine, worker: Worker, older_than: float) -> None:
    """Remove this process's worker row, and those of processes silent for ``older_than`` seconds."""
    with engine.begin() as connection:
        connection.execute(
            delete(ServiceWorker).where(
                or_(
                    col(ServiceWorker.id) == worker.id,
                    col(ServiceWorker.beat_at) < _now(connection, -older_than),
                )
            )
        )


_FENCE = (
    select(col(AccountLease.token))
    .where(
        col(AccountLease.account) == bindparam("account"),
        col(AccountLease.holder) == bindparam("holder"),
        col(AccountLease.token) == bindparam("token"),
    )
    .with_for_update(read=True, key_share=True)
)
# built once, as every batch runs one (a statement built per call is most of the check's cost):
# unexpired by the database's clock on PostgreSQL, by this process's (the ``now`` parameter) on SQLite
_FENCE_BY_DATABASE_CLOCK = _FENCE.where(col(AccountLease.expires_at) > func.now())
_FENCE_BY_OUR_CLOCK = _FENCE.where(
    col(AccountLease.expires_at) > bindparam("now", type_=DateTime(timezone=True))
)


def fence(connection: Connection, worker: Worker, account: str, token: int) -> None:
    """Raise ``LeaseLost`` unless this process holds the account's lease with ``token``, unexpired.

    Called first in a batch's transaction: the lock it takes on the lease row (FOR KEY SHARE)
    lasts until that transaction ends, so no other process can take the lease (``claim`` locks
    the row FOR UPDATE first) before this batch is committed, while this process's own renewals
    (plain UPDATEs of the expiry) are not held up by its batches.
    """
    params: dict[str, Any] = {"account": account, "holder": worker.id, "token": token}
    if connection.dialect.name == "postgresql":
        statement = _FENCE_BY_DATABASE_CLOCK
    else:
        statement, params["now"] = _FENCE_BY_OUR_CLOCK, utcnow()
    found = connection.execute(statement, params).first()
    if found is None:
        raise LeaseLost(f"account {account}: this process's lease (token {token}) was lost")


def other_live_workers(engine: Engine, host: str, pid: int, within: float) -> list[ServiceWorker]:
    """The processes other than (host, pid) that beat within ``within`` seconds, newest start first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ServiceWorker)
            .where(
                col(ServiceWorker.beat_at) > _now(connection, -within),
                or_(col(ServiceWorker.host) != host, col(ServiceWorker.pid) != pid),
            )
            .order_by(col(ServiceWorker.started_at).desc())
        ).all()
    return [ServiceWorker.model_validate(row, from_attributes=True) for row in rows]


def lease_holders(engine: Engine) -> dict[str, Holder]:
    """Every held, unexpired lease by account (``mailgate status``, ``/metrics``)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AccountLease).where(
                and_(col(AccountLease.holder).is_not(None), col(AccountLease.expires_at) > _now(connection))
            )
        ).all()
    return {
        row.account: Holder(row.account, row.host or "", row.pid or 0, row.acquired_at, row.expires_at)
        for row in rows
    }
