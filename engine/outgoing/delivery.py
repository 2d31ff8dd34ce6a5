"""Draining the outbox: each due message is claimed, sent through its account's server, and recorded.

The state machine lives in the outbox table::

    queued   ─┐                 ┌─ 250 ─────────────────────────> sent
              ├─ claim ─> sending ─ 4xx, network, other 5xx ──> deferred (later: claimed again,
    deferred ─┘                 │                                 failed once attempts are used up)
                                ├─ 501, 503, 550, 553 ─────────> failed (never retried)
                                └─ crash: still sending after sending_timeout_seconds ─> claimed again

A message is claimed (``status = 'sending'``) in its own committed transaction before the server
is spoken to, and marked ``sent`` in another after the server accepted it. The claim picks the
next due message with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's write lock
serialises claims) and marks it in the same transaction, so any number of drains at once (every
``mailgate run`` process of a scaled-out desk, and ``mailgate outbox send``) never send the same
message, and none waits on a row another is claiming. A crash between the
server's acceptance and the ``sent`` commit leaves the message ``sending``; once that is older
than ``sending_timeout_seconds`` it is sent again: delivery is at least once, and the message
keeps its Message-ID (and its bytes), so the receiver can tell the copy from a new message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from connectors.base import Envelope, SendError, Transport
from connectors.registry import make_transport
from engine.config.outgoing import OutgoingConfig
from engine.errors import MailgateError
from engine.outgoing.compose import ComposeError, compose, message_bytes, route_for
from engine.runtime import Runtime
from engine.storage.db import transaction
from engine.storage.models import OutboxMessage, utcnow
from engine.storage.views import iso

log = logging.getLogger("mailgate.outgoing")

_WAITING = ("queued", "deferred")
_WARNED_NO_SERVER: set[Path] = set()  # configs already told about (once per process, not every pass)


@dataclass(frozen=True)
class Delivery:
    """What one attempt did to one message: its new status and the server's reply or the error."""

    id: int
    to: str
    status: str  # sent | deferred | failed
    attempts: int
    detail: str  # the server's reply when sent, else the error
    via: str | None = None  # the outgoing server's name (None: no server was tried)
    next_attempt_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON line ``mailgate outbox send --json`` prints for this message."""
        return {
            "id": self.id,
            "to": self.to,
            "status": self.status,
            "attempts": self.attempts,
            "detail": self.detail,
            "via": self.via,
            "next_attempt_at": iso(self.next_attempt_at),
        }


@dataclass(frozen=True)
class DrainReport:
    """One pass over the outbox: every attempt made, and what was left waiting."""

    deliveries: tuple[Delivery, ...] = ()
    waiting: int = 0  # queued or deferred messages not yet due (or not sent: no server)
    no_server: bool = False  # no outgoing server is configured: nothing was sent

    def count(self, status: str) -> int:
        """How many attempts ended in ``status`` (sent, deferred or failed)."""
        return sum(1 for d in self.deliveries if d.status == status)

    def summary(self) -> str:
        """One line for people: ``2 sent, 1 deferred, 0 failed; 3 waiting``."""
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("sent", "deferred", "failed"))
        line = f"{counts}; {self.waiting} waiting"
        if self.no_server:
            line += " (no outgoing server is configured: add outgoing.servers to the config)"
        return line


@dataclass(frozen=True)
class _Claimed:
    row: OutboxMessage
    claimed_at: datetime


def retry_delay(policy: OutgoingConfig, attempts: int) -> timedelta:
    """The wait before the next attempt after ``attempts`` failed ones: doubling, capped."""
    seconds = policy.retry_delay_seconds * 2 ** min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(seconds, policy.max_retry_delay_seconds))


async def drain_outbox(runtime: Runtime, *, now: datetime | None = None) -> DrainReport:
    """Send every due message once; safe to call repeatedly and from several processes at once.

    ``now`` fixes the clock (for tests); by default each step uses the current time.
    """
    clock: Callable[[], datetime] = (lambda: now) if now is not None else utcnow
    policy = runtime.config.outgoing
    engine = runtime.engine
    if not policy.servers:
        waiting = await asyncio.to_thread(_count_waiting, engine, None)
        if waiting and runtime.config.path not in _WARNED_NO_SERVER:
            _WARNED_NO_SERVER.add(runtime.config.path)
            log.warning(
                "%d outgoing messages wait: no outgoing server is configured (outgoing.servers)", waiting
            )
        return DrainReport((), waiting, no_server=True)
    transports: dict[str, Transport] = {}
    down: dict[str, str] = {}  # servers that could not be reached in this pass, with the error
    deliveries: list[Delivery] = []
    try:
        after = 0  # one pass in id order: a message deferred in this pass is not tried again in it
        while (claimed := await asyncio.to_thread(_claim_next, engine, after, clock(), policy)) is not None:
            assert claimed.row.id is not None
            after = claimed.row.id
            delivery = await _attempt(runtime, claimed, transports, down, clock)
            await asyncio.to_thread(_record, engine, claimed, delivery, clock())
            deliveries.append(delivery)
    finally:
        for transport in transports.values():
            await transport.close()
    waiting = await asyncio.to_thread(_count_waiting, engine, clock())
    return DrainReport(tuple(deliveries), waiting)


def send_outbox_once(runtime: Runtime) -> DrainReport:
    """Drain the outbox once (``mailgate outbox send``); not for use inside a running event loop."""
    return asyncio.run(drain_outbox(runtime))


async def _attempt(
    runtime: Runtime,
    claimed: _Claimed,
    transports: dict[str, Transport],
    down: dict[str, str],
    clock: Callable[[], datetime],
) -> Delivery:
    """Send one claimed message and say what became of it (nothing is written here)."""
    row = claimed.row
    policy = runtime.config.outgoing
    assert row.id is not None
    try:
        route = route_for(runtime.config, row)
        if route is None:
            raise ComposeError("no outgoing server is configured")
        data = message_bytes(compose(row, route))
    except ComposeError as exc:
        return _failed(row, str(exc))
    server = route.server
    try:
        if server.name in down:
            raise SendError(down[server.name], connection=True)
        transport = transports.get(server.name)
        if transport is None:
            transport = transports[server.name] = make_transport(server, runtime.config.base_dir)
        reply = await transport.send(Envelope(route.from_address, row.to_address, data, row.message_id))
    except SendError as exc:
        if exc.connection:
            down[server.name] = str(exc)
        elif exc.permanent or exc.code in policy.permanent_codes:
            return _failed(row, str(exc), server.name)
        return _deferred(row, str(exc), server.name, policy, clock())
    except MailgateError as exc:  # the server's settings cannot be used (checked at load; changed since?)
        down[server.name] = str(exc)
        return _deferred(row, str(exc), server.name, policy, clock())
    except Exception as exc:  # a bug in a transport must cost a retry, never the message
        log.exception("transport %s failed on outbox=%s", server.name, row.id)
        error = f"internal error in transport {server.type!r}: {type(exc).__name__}: {exc}"
        return _deferred(row, error, server.name, policy, clock())
    log.info("sent outbox=%s to=%s via=%s reply=%s", row.id, row.to_address, server.name, reply)
    return Delivery(row.id, row.to_address, "sent", row.attempts, reply, server.name)


def _failed(row: OutboxMessage, error: str, via: str | None = None) -> Delivery:
    assert row.id is not None
    log.warning("failed outbox=%s to=%s via=%s: %s", row.id, row.to_address, via, error)
    return Delivery(row.id, row.to_address, "failed", row.attempts, error, via)


def _deferred(row: OutboxMessage, error: str, via: str, policy: OutgoingConfig, now: datetime) -> Delivery:
    assert row.id is not None
    if row.attempts >= policy.max_attempts:
        return _failed(row, f"gave up after {row.attempts} attempts; the last: {error}", via)
    later = now + retry_delay(policy, row.attempts)
    log.info("deferred outbox=%s to=%s via=%s until %s: %s", row.id, row.to_address, via, later, error)
    return Delivery(row.id, row.to_address, "deferred", row.attempts, error, via, later)


# --- the database steps (each its own transaction; run in a worker thread) ---------------------------


def _due(now: datetime, policy: OutgoingConfig) -> Any:
    stale = now - timedelta(seconds=policy.sending_timeout_seconds)
    return or_(
        and_(
            col(OutboxMessage.status).in_(_WAITING),
            or_(col(OutboxMessage.next_attempt_at).is_(None), col(OutboxMessage.next_attempt_at) <= now),
        ),
        and_(col(OutboxMessage.status) == "sending", col(OutboxMessage.sending_since) <= stale),
    )


_CLAIMED_VALUES = {"status": "sending", "attempts": col(OutboxMessage.attempts) + 1}


def _claim_next(engine: Engine, after: int, now: datetime, policy: OutgoingConfig) -> _Claimed | None:
    """Mark the next due message after id ``after`` ``sending`` (committed); None when none is left.

    A row another drain is claiming right now is skipped (``SKIP LOCKED``), not waited for; one it
    claimed is no longer due when this drain's lock re-reads it.
    """
    with transaction(engine) as session:
        pick = (
            select(OutboxMessage.id)
            .where(_due(now, policy), col(OutboxMessage.id) > after)
            .order_by(col(OutboxMessage.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        message_id = session.exec(pick).first()
        if message_id is None:
            return None
        claim = update(OutboxMessage).where(col(OutboxMessage.id) == message_id)
        session.execute(claim.values(sending_since=now, **_CLAIMED_VALUES))
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return _Claimed(row, now)


def _record(engine: Engine, claimed: _Claimed, delivery: Delivery, now: datetime) -> None:
    """Write what the attempt did, unless another drain has re-claimed the message meanwhile."""
    values: dict[str, Any] = {"status": delivery.status, "sent_via": delivery.via}
    if delivery.status == "sent":
        values.update(sent_at=now, server_reply=delivery.detail, last_error=None)
    else:
        values.update(last_error=delivery.detail, next_attempt_at=delivery.next_attempt_at)
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == delivery.id,
                col(OutboxMessage.status) == "sending",
                col(OutboxMessage.sending_since) == claimed.claimed_at,
            )
            .values(**values)
        )


def _count_waiting(engine: Engine, now: datetime | None) -> int:
    with transaction(engine) as session:
        statement = select(func.count()).where(col(OutboxMessage.status).in_(_WAITING))
        if now is not None:
            statement = statement.where(col(OutboxMessage.next_attempt_at) > now)
        return int(session.exec(statement).one())
