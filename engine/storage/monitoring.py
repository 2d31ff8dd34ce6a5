"""What ``/metrics`` reads from the database when it is scraped: the quarantine and the outbox.

Counted at scrape time rather than per message, so processing mail pays nothing for them. Read on
a ``READ_ONLY`` connection: on SQLite a deferred transaction, which in WAL mode never waits for
the service's writes nor holds them up. The counts use the indexes on ``status`` and ``account``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from engine.storage.db import READ_ONLY
from engine.storage.models import OutboxMessage, QuarantineEntry

# an outgoing message in one of these is still to be sent
WAITING_STATUSES = ("queued", "deferred", "sending")

_HELD_BY_ACCOUNT = (
    select(col(QuarantineEntry.account), func.count())
    .where(col(QuarantineEntry.status) == "held")
    .group_by(col(QuarantineEntry.account))
)
_OUTBOX_BY_STATUS = select(col(OutboxMessage.status), func.count()).group_by(col(OutboxMessage.status))
_OLDEST_WAITING = select(func.min(col(OutboxMessage.created_at))).where(
    col(OutboxMessage.status).in_(WAITING_STATUSES)
)


@dataclass(frozen=True)
class DatabaseFigures:
    """The quarantine and the outbox as counted at one moment."""

    quarantined: dict[str, int]  # messages held in quarantine, by account
    outbox: dict[str, int]  # outgoing messages, by status
    oldest_waiting: datetime | None  # when the oldest message still to be sent was queued (UTC)


def read_figures(engine: Engine) -> DatabaseFigures:
    """Count the quarantine and the outbox (read only)."""
    with engine.connect().execution_options(**READ_ONLY) as connection:
        quarantined = {str(account): int(count) for account, count in connection.execute(_HELD_BY_ACCOUNT)}
        outbox = {str(status): int(count) for status, count in connection.execute(_OUTBOX_BY_STATUS)}
        oldest = connection.execute(_OLDEST_WAITING).scalar()
    return DatabaseFigures(quarantined, outbox, oldest)


def ping(engine: Engine) -> None:
    """Ask the database a trivial question; raises if it does not answer."""
    with engine.connect().execution_options(**READ_ONLY) as connection:
        connection.execute(text("SELECT 1"))
