"""The originals: every processed mail's raw bytes, compressed, kept for a while (issue 12).

A truncation mistake, a charset guessed wrong or a disputed history entry can always be checked
against what really arrived: ``mailgate message show KEY --raw``. Each original is written in the
message's own transaction, keyed like its ledger entry; ``purge_originals`` drops those older than
``processing.keep_originals_days`` (the service does it once an hour).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.mail.header_bounds import ledger_key
from engine.mail.original_form import COMPRESSION, compress_original
from engine.storage.direct import run_statement
from engine.storage.models import OriginalMessage

_INSERT = insert(OriginalMessage)
_PURGE = delete(OriginalMessage).where(col(OriginalMessage.received_at) < bindparam("before"))


@dataclass(frozen=True)
class Original:
    """One kept original, decompressed."""

    account: str
    message_key: str
    message_id: str | None
    received_at: datetime
    raw: bytes


def keep_original(
    session: Session,
    *,
    account: str,
    key: str,
    message_id: str | None,
    raw: bytes,
    now: datetime,
    compressed: bytes | None = None,
) -> None:
    """Store the mail's raw bytes, compressed, under its ledger key.

    ``compressed``: ``compress_original(raw)`` if the caller has it already (the parse worker
    compresses each original as it reads the message); else it is compressed here.
    """
    run_statement(
        session,
        _INSERT,
        {
            "account": account,
            "message_key": key,
            "message_id": message_id,
            "received_at": now,
            "size": len(raw),
            "compression": COMPRESSION,
            "data": compressed if compressed is not None else compress_original(raw),
        },
    )


def key_conditions(key_column: Any, key_or_message_id: str) -> Any:
    """Where a ledger-keyed column names this mail: its key, the key of that Message-ID, or a
    reused Message-ID's own key (``<key>#<fingerprint>``, found by range, not by pattern)."""
    wanted = key_or_message_id.strip().removeprefix("<").removesuffix(">")
    keys = {wanted, ledger_key(wanted, "")}
    conditions = [key_column.in_(sorted(keys))]
    for key in keys:  # "#" sorts just before "$": every "<key>#..." lies in [key + "#", key + "$")
        conditions.append(and_(key_column >= f"{key}#", key_column < f"{key}$"))
    return or_(*conditions)


def find_originals(session: Session, key_or_message_id: str) -> list[Original]:
    """The originals kept for this Message-ID (angle brackets optional) or ledger key, oldest first."""
    rows = session.exec(
        select(OriginalMessage)
        .where(key_conditions(col(OriginalMessage.message_key), key_or_message_id))
        .order_by(col(OriginalMessage.received_at), col(OriginalMessage.id))
    ).all()
    return [
        Original(row.account, row.message_key, row.message_id, row.received_at, zlib.decompress(row.data))
        for row in rows
    ]


def purge_originals(session: Session, before: datetime) -> int:
    """Drop the originals received before ``before``; how many were dropped."""
    result = session.execute(_PURGE, {"before": before})
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired_originals(engine: Engine, keep_days: int, now: datetime) -> int:
    """Drop the originals older than ``keep_days`` (none when it is 0: nothing is kept then)."""
    if keep_days <= 0:
        return 0
    with Session(engine) as session:
        dropped = purge_originals(session, now - timedelta(days=keep_days))
        session.commit()
    return dropped
