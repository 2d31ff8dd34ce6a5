"""The quarantine: a mail we could not handle, kept whole with its reason until an admin acts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from engine.storage.models import QuarantineEntry, utcnow


@dataclass(frozen=True)
class HeldMail:
    """A quarantined mail taken out to be retried: where it came from and its bytes."""

    entry_id: int
    account: str
    key: str
    origin: str
    raw: bytes


def hold(
    session: Session,
    *,
    account: str,
    key: str,
    origin: str,
    raw: bytes,
    reason: str,
    retry_of: int | None = None,
) -> int:
    """Keep the mail with its reason (a retry that failed again updates its own entry); its entry id."""
    entry = session.get(QuarantineEntry, retry_of) if retry_of is not None else None
    if entry is None:
        entry = QuarantineEntry(account=account, message_key=key, origin=origin, raw=raw)
    entry.reason, entry.status = reason, "held"
    session.add(entry)
    session.flush()
    assert entry.id is not None
    return entry.id


def take_for_retry(session: Session, entry_id: int) -> HeldMail | str:
    """The held mail of entry ``entry_id``, or why it cannot be retried (none, or already released)."""
    entry = session.get(QuarantineEntry, entry_id)
    if entry is None:
        return f"no quarantine entry {entry_id}"
    if entry.status != "held":
        return f"quarantine entry {entry_id} was already released"
    return HeldMail(entry_id, entry.account, entry.message_key, entry.origin, entry.raw)


def release(session: Session, entry_id: int) -> None:
    """Mark the entry released: its mail has now been processed."""
    held = session.get(QuarantineEntry, entry_id)
    if held is not None:
        held.status, held.released_at = "released", utcnow()
        session.add(held)
