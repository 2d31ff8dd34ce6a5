"""What the service knows about each account (last poll, messages processed, last error, state)
and about itself (its heartbeat: is it running?).

Written by ``engine.service`` (one row per account, updated after every pass and every failure;
one heartbeat row, written at start, every ``service.heartbeat_seconds`` and at a clean stop) and
read by ``mailgate status``. The ledger stays the truth about messages; these tables only say how
the watching goes. (Plain sessions here, not ``engine.storage.db.transaction``: ``db`` imports
this module so that the schema includes the tables.)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from engine.config.model import AccountConfig
from engine.storage.leases import Holder, lease_holders, other_live_workers
from engine.storage.models import utcnow

STATE_OK = "ok"
STATE_RETRYING = "retrying"
STATE_AUTH_FAILED = "auth_failed"
STATE_FAILED = "failed"  # the account cannot be watched at all (e.g. its connector cannot be loaded)
STATE_HELD = "held_elsewhere"  # `run --once`: another running process holds the account's lease
FAILING_STATES = (STATE_RETRYING, STATE_AUTH_FAILED, STATE_FAILED)
# shown, never stored: an account with a stored status that is no longer in the config
STATE_REMOVED = "removed"

SERVICE_RUNNING = "running"  # a heartbeat within the last STALE_AFTER_BEATS heartbeats
SERVICE_STOPPED = "stopped"  # the service recorded a clean stop
SERVICE_STALE = "stale"  # no heartbeat for STALE_AFTER_BEATS heartbeats: killed, crashed or hung
SERVICE_NEVER_STARTED = "never_started"  # no heartbeat was ever written to this database
STALE_AFTER_BEATS = 4
_HEARTBEAT_ROW = "service"


class AccountStatus(SQLModel, table=True):
    """The service's view of one account."""

    account: str = Field(primary_key=True)
    state: str = STATE_OK  # ok | retrying | auth_failed | failed
    last_poll_at: datetime | None = None
    messages_processed: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error_at: datetime | None = None
    retry_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class ServiceHeartbeat(SQLModel, table=True):
    """The service's sign of life: one row, rewritten at start, every heartbeat and at a clean stop."""

    name: str = Field(primary_key=True)  # always "service"
    host: str = ""
    pid: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    beat_at: datetime = Field(default_factory=utcnow)
    interval_seconds: float = 15.0
    stopped_at: datetime | None = None


def record_heartbeat(engine: Engine, host: str, pid: int, started_at: datetime, interval: float) -> None:
    """The service is alive now (and beats every ``interval`` seconds)."""
    with Session(engine) as session:
        row = session.get(ServiceHeartbeat, _HEARTBEAT_ROW) or ServiceHeartbeat(name=_HEARTBEAT_ROW)
        row.host, row.pid, row.started_at, row.interval_seconds = host, pid, started_at, interval
        row.beat_at, row.stopped_at = utcnow(), None
        session.add(row)
        session.commit()


def record_stopped(engine: Engine, host: str, pid: int, others_within: float = 0.0) -> None:
    """The service stopped cleanly (unless the row is another service's by now: then it is left alone).

    If another process sharing the accounts beat within ``others_within`` seconds, the row is
    handed to it instead: the service as a whole still runs (docs/scaling.md).
    """
    others = other_live_workers(engine, host, pid, others_within) if others_within > 0 else []
    with Session(engine) as session:
        row = session.get(ServiceHeartbeat, _HEARTBEAT_ROW)
        if row is not None and (row.host, row.pid) == (host, pid):
            if others:
                row.host, row.pid, row.started_at = others[0].host, others[0].pid, others[0].started_at
                row.beat_at = utcnow()
            else:
                row.stopped_at = row.beat_at = utcnow()
            session.add(row)
            session.commit()


def service_view(engine: Engine, now: datetime | None = None) -> dict[str, Any]:
    """The service's state as its heartbeat tells (``SERVICE_*``), with where and since when it ran."""
    with Session(engine) as session:
        row = session.get(ServiceHeartbeat, _HEARTBEAT_ROW)
    if row is None:
        return {
            "state": SERVICE_NEVER_STARTED,
            "host": None,
            "pid": None,
            "started_at": None,
            "heartbeat": None,
        }
    if row.stopped_at is not None:
        state = SERVICE_STOPPED
    else:
        silent = _naive_utc(now or utcnow()) - _naive_utc(row.beat_at)
        stale = silent > timedelta(seconds=STALE_AFTER_BEATS * row.interval_seconds)
        state = SERVICE_STALE if stale else SERVICE_RUNNING
    return {
        "state": state,
        "host": row.host,
        "pid": row.pid,
        "started_at": _when(row.started_at),
        "heartbeat": _when(row.beat_at),
    }


def record_pass(engine: Engine, account: str, processed: int) -> None:
    """A pass reached the mailbox and handled everything waiting: the account is ok."""
    now = utcnow()
    with Session(engine) as session:
        row = session.get(AccountStatus, account) or AccountStatus(account=account)
        row.state, row.last_poll_at, row.retry_at, row.updated_at = STATE_OK, now, None, now
        row.messages_processed += processed
        session.add(row)
        session.commit()


def record_failure(
    engine: Engine,
    account: str,
    state: str,
    error: str,
    processed: int,
    retry_at: datetime | None,
    at: datetime | None = None,
) -> None:
    """A pass failed (``processed`` messages were handled before it did); remember why and when.

    ``at``: when it failed, if that was earlier (a failure written once the database is back).
    """
    now = utcnow()
    with Session(engine) as session:
        row = session.get(AccountStatus, account) or AccountStatus(account=account)
        row.state, row.last_error, row.last_error_at = state, error, at or now
        row.retry_at, row.updated_at = retry_at, now
        row.messages_processed += processed
        session.add(row)
        session.commit()


def account_statuses(engine: Engine) -> dict[str, AccountStatus]:
    """Every account's stored status, by account name."""
    with Session(engine, expire_on_commit=False) as session:
        return {row.account: row for row in session.exec(select(AccountStatus))}


def _naive_utc(moment: datetime) -> datetime:
    """A moment in UTC without a zone (stored times are UTC, read back with or without a zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _when(moment: datetime | None) -> str | None:
    """A stored moment as ``YYYY-MM-DD HH:MM:SSZ``."""
    return None if moment is None else _naive_utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


def _held_by(holder: Holder | None) -> dict[str, Any]:
    """Which running process works the account (its lease), and since when; None: none."""
    if holder is None:
        return {"holder_host": None, "holder_pid": None, "held_since": None}
    return {"holder_host": holder.host, "holder_pid": holder.pid, "held_since": _when(holder.since)}


def status_view(engine: Engine, accounts: Iterable[AccountConfig]) -> list[dict[str, Any]]:
    """One row per configured account, then any other account with a stored status (``mailgate status``).

    ``failing`` is true for an active account whose last attempt failed (``FAILING_STATES``); an
    account no longer in the config is ``removed``, whatever it was. ``holder_host``,
    ``holder_pid`` and ``held_since`` name the running process that holds the account's lease.
    """
    stored = account_statuses(engine)
    holders = lease_holders(engine)
    rows: list[dict[str, Any]] = []
    listed: list[tuple[str, bool | None, str | None]] = [
        (a.name, a.active, a.connector_type) for a in accounts
    ]
    listed += [(name, None, None) for name in stored if name not in {n for n, _, _ in listed}]
    for name, active, connector in listed:
        row = stored.get(name)
        if active is None:
            state = STATE_REMOVED
        elif row is None:
            state = "inactive" if active is False else "never_polled"
        else:
            state = row.state if active else f"inactive (was {row.state})"
        rows.append(
            {
                "account": name,
                "connector": connector,
                "active": active,
                "state": state,
                "last_poll": _when(row.last_poll_at) if row else None,
                "processed": row.messages_processed if row else 0,
                "last_error": row.last_error if row else None,
                "last_error_at": _when(row.last_error_at) if row else None,
                "retry_at": _when(row.retry_at) if row else None,
                "failing": state in FAILING_STATES,
                **_held_by(holders.get(name)),
            }
        )
    return rows
