"""Dropping what an admin no longer needs: quarantined mail and sent outgoing messages.

Nothing here runs by itself: ``mailgate quarantine drop|purge`` and ``mailgate outbox purge`` call
it (from cron or a systemd timer, for a retention policy). Each call is one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from engine.storage.db import transaction
from engine.storage.models import OutboxMessage, QuarantineEntry

# how long `mailgate outbox purge` keeps a sent message by default: as long as the originals of
# incoming mail (processing.keep_originals_days) and a rotated reply-token secret (90 days), so
# that a reply to a message within that time is still recognised as a reply to us
DEFAULT_KEEP_SENT = timedelta(days=90)

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_AGE = re.compile(r"\s*(\d{1,6})\s*([mhdw])\s*")


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w`` or ``90m`` as a duration; ValueError for anything else."""
    found = _AGE.fullmatch(text)
    if found is None:
        raise ValueError(
            "expected a number and a unit: m (minutes), h (hours), d (days) or w (weeks), e.g. 30d"
        )
    return int(found.group(1)) * _UNITS[found.group(2)]


@dataclass(frozen=True)
class DroppedEntry:
    """A quarantine entry that was dropped."""

    id: int
    account: str
    message_key: str
    status: str


def drop_quarantined(engine: Engine, entry_id: int) -> DroppedEntry | None:
    """Delete one quarantine entry (held or released); None if there is no such entry."""
    with transaction(engine) as session:
        entry = session.get(QuarantineEntry, entry_id)
        if entry is None:
            return None
        dropped = DroppedEntry(entry_id, entry.account, entry.message_key, entry.status)
        session.execute(delete(QuarantineEntry).where(col(QuarantineEntry.id) == entry_id))
    return dropped


def purge_quarantine(engine: Engine, before: datetime) -> int:
    """Delete every quarantine entry received before ``before``; how many were deleted."""
    return _count_then_delete(engine, QuarantineEntry, col(QuarantineEntry.received_at) < before)


def purge_sent_outbox(engine: Engine, before: datetime) -> int:
    """Delete the outgoing messages sent before ``before`` (never a queued, deferred or failed one)."""
    old_and_sent = (col(OutboxMessage.status) == "sent") & (col(OutboxMessage.sent_at) < before)
    return _count_then_delete(engine, OutboxMessage, old_and_sent)


def _count_then_delete(
    engine: Engine, table: type[QuarantineEntry] | type[OutboxMessage], where: ColumnElement[bool]
) -> int:
    with transaction(engine) as session:
        count = int(session.execute(select(func.count()).select_from(table).where(where)).scalar() or 0)
        if count:
            session.execute(delete(table).where(where))
    return count
