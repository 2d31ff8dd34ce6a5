"""The originals: every processed mail's raw bytes, compressed, kept for a while (issue 12).

A truncation mistake, a charset guessed wrong or a disputed history entry can always be checked
against what really arrived: ``mailgate message show KEY --raw``. ``purge_originals`` drops those
older than ``processing.keep_originals_days`` (the service does it once an hour).

Where they are kept: beside a SQLite database file, in a file of their own
(engine.storage.original_file: ``desk.sqlite`` keeps them in ``desk.originals.sqlite``), written
and committed before the message's transaction commits, by the service's parse worker for the
mail it reads; on PostgreSQL (and a SQLite database in memory) in the ``originalmessage`` table,
in the message's own transaction, keyed like its ledger entry. Either way an original is in place
before the ledger entry that links to it. Originals written to the table by earlier versions on
SQLite are still found and purged there.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from engine.mail.header_bounds import ledger_key
from engine.mail.original_form import COMPRESSION, compress_original
from engine.storage.direct import run_statement
from engine.storage.models import LedgerEntry, OriginalMessage
from engine.storage.original_file import OriginalsFile, originals_file_for

_INSERT = insert(OriginalMessage)
_PURGE = delete(OriginalMessage).where(col(OriginalMessage.received_at) < bindparam("before"))


@dataclass(frozen=True)
class Original:
    """One kept original; ``raw`` decompresses it (a console page asking whether it is kept does not)."""

    account: str
    message_key: str
    message_id: str | None
    received_at: datetime
    stored: bytes  # the bytes as kept: the zlib format
    fingerprint: str | None = None  # of the mail (kept in an originals' file only)

    @property
    def raw(self) -> bytes:
        """The mail's bytes, as they arrived."""
        return zlib.decompress(self.stored)


def originals_file_of(bind: Engine | Any) -> Path | None:
    """The originals' file of the database an engine (or connection) is bound to, if it has one."""
    url = bind.url if hasattr(bind, "url") else bind.engine.url
    return originals_file_for(url.database) if url.get_backend_name() == "sqlite" else None


_WRITERS: dict[Path, OriginalsFile] = {}  # this process's connection to each originals' file it wrote
_WRITERS_LOCK = threading.Lock()
_WRITERS_KEPT = 4  # a process opens one database (tests, many): the oldest connections are closed


def _writer(path: Path) -> OriginalsFile:
    """This process's connection to the originals' file ``path`` (opened, and the file made, once)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(path)
        if writer is None:
            while len(_WRITERS) >= _WRITERS_KEPT:
                _WRITERS.pop(next(iter(_WRITERS))).close()
            writer = _WRITERS[path] = OriginalsFile(path)
        return writer


def keep_original(
    session: Session,
    *,
    account: str,
    key: str,
    message_id: str | None,
    raw: bytes,
    now: datetime,
    compressed: bytes | None = None,
    parsed_key: str | None = None,
    fingerprint: str | None = None,
) -> None:
    """Store the mail's raw bytes, compressed: under its ledger ``key`` in the database's table, or
    in the originals' file under the key reading gave (``parsed_key``) and its ``fingerprint``.

    ``compressed``: ``compress_original(raw)`` if the caller has it already (the parse worker
    compresses each original as it reads the message); else it is compressed here.
    """
    data = compressed if compressed is not None else compress_original(raw)
    path = originals_file_of(session.get_bind())
    if path is not None:
        try:
            _writer(path).keep(
                account=account,
                key=parsed_key or key,
                fingerprint=fingerprint or "",
                message_id=message_id,
                received_at=now,
                size=len(raw),
                compression=COMPRESSION,
                data=data,
            )
        except sqlite3.Error as exc:  # as the database's own errors are: an outage, or this mail's fault
            _WRITERS.pop(path, None)
            raise DBAPIError.instance(f"(keeping the original in {path})", (), exc, sqlite3.Error) from None
        return
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
            "data": data,
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


def _reader(session: Session) -> OriginalsFile | None:
    """A connection to the database's originals' file, if it has one and it exists (closed by the caller)."""
    path = originals_file_of(session.get_bind())
    if path is None or not path.exists():
        return None
    return OriginalsFile(path, create=False)


def find_originals(session: Session, key_or_message_id: str) -> list[Original]:
    """The originals kept for this Message-ID (angle brackets optional) or ledger key, oldest first."""
    rows = session.exec(
        select(OriginalMessage)
        .where(key_conditions(col(OriginalMessage.message_key), key_or_message_id))
        .order_by(col(OriginalMessage.received_at), col(OriginalMessage.id))
    ).all()
    found = [
        Original(row.account, row.message_key, row.message_id, row.received_at, row.data) for row in rows
    ]
    reader = _reader(session)
    if reader is None:
        return found
    try:
        wanted = key_or_message_id.strip().removeprefix("<").removesuffix(">")
        keys = {wanted, ledger_key(wanted, "")}
        pairs = {tuple(key.rsplit("#", 1)) for key in keys if "#" in key}  # a reused Message-ID's own key
        stored = reader.find(keys, pairs)  # type: ignore[arg-type]
    finally:
        reader.close()
    for row in stored:
        key = _ledger_key_of(session, row.account, row.message_key, row.fingerprint)
        found.append(Original(row.account, key, row.message_id, row.received_at, row.data, row.fingerprint))
    return sorted(found, key=lambda original: original.received_at)


def original_of(session: Session, account: str, ledger_key: str) -> Original | None:
    """The original of the mail recorded under this ledger entry's account and key, if still kept."""
    for original in find_originals(session, ledger_key):
        if original.account == account and original.message_key == ledger_key:
            return original
    return None


def _ledger_key_of(session: Session, account: str, key: str, fingerprint: str) -> str:
    """The ledger key of the mail read under ``key`` with ``fingerprint``: ``key``, unless another
    mail holds it (then the mail's own, ``<key>#<fingerprint>``; see engine.storage.ledger)."""
    holder = session.exec(
        select(LedgerEntry.fingerprint).where(LedgerEntry.account == account, LedgerEntry.message_key == key)
    ).first()
    return key if holder is None or holder == fingerprint or not fingerprint else f"{key}#{fingerprint}"


def purge_originals(session: Session, before: datetime) -> int:
    """Drop the originals received before ``before``; how many were dropped."""
    result = session.execute(_PURGE, {"before": before})
    dropped = int(getattr(result, "rowcount", 0) or 0)
    path = originals_file_of(session.get_bind())
    if path is not None and path.exists():
        kept = OriginalsFile(path)
        try:
            dropped += kept.purge(before)
        finally:
            kept.close()
    return dropped


def purge_expired_originals(engine: Engine, keep_days: int, now: datetime) -> int:
    """Drop the originals older than ``keep_days`` (none when it is 0: nothing is kept then)."""
    if keep_days <= 0:
        return 0
    with Session(engine) as session:
        dropped = purge_originals(session, now - timedelta(days=keep_days))
        session.commit()
    return dropped
