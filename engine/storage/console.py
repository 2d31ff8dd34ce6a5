"""The admin console's own tables: who may sign in (and as what), their sessions, and what they did.

``mailgate admin add`` writes an ``ConsoleAdmin`` (the password hashed with argon2 by
``engine.web.passwords``: only the hash is stored); a sign-in writes a ``ConsoleSession`` whose
random token is the cookie (only its SHA-256 is stored, so a database dump signs no one in) and
whose CSRF token every form of that session carries; every retry, drop and cancel writes a
``ConsoleAudit`` row in the same transaction as the change it records.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Text, delete
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from engine.storage.models import OutboxMessage, QuarantineEntry, utcnow
from engine.storage.roles import ROLE_ADMIN, ROLE_VIEWER

SESSION_LIFETIME = timedelta(hours=12)


class ConsoleAdmin(SQLModel, table=True):
    """Someone who may sign in to the console: a viewer reads, an admin also retries, drops, cancels."""

    name: str = Field(primary_key=True)
    password_hash: str  # argon2id, as argon2-cffi writes it
    role: str = ROLE_VIEWER
    created_at: datetime = Field(default_factory=utcnow)


class ConsoleSession(SQLModel, table=True):
    """One signed-in browser: the SHA-256 of its cookie's token, its CSRF token, when it ends."""

    token_digest: str = Field(primary_key=True)
    admin: str = Field(index=True)
    csrf_token: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class ConsoleAudit(SQLModel, table=True):
    """One action an admin took in the console (retry, drop, cancel, sign-in), with its result."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    admin: str
    action: str  # quarantine.retry | quarantine.drop | outbox.retry | outbox.cancel | sign_in | ...
    target: str = ""  # e.g. "quarantine 12", "outbox 7"
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


@dataclass(frozen=True)
class SignedIn:
    """Who a request comes from, as its session says."""

    admin: str
    role: str
    csrf_token: str

    @property
    def may_act(self) -> bool:
        """Whether this person may retry, drop and cancel (admins only)."""
        return self.role == ROLE_ADMIN


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def save_admin(engine: Engine, name: str, password_hash: str, role: str) -> bool:
    """Create the admin, or replace their password and role; True if they are new."""
    with Session(engine) as session:
        row = session.get(ConsoleAdmin, name)
        created = row is None
        row = row or ConsoleAdmin(name=name, password_hash=password_hash, role=role)
        row.password_hash, row.role = password_hash, role
        session.add(row)
        session.add(ConsoleAudit(admin=name, action="admin.saved", target=f"admin {name}", detail="{}"))
        session.commit()
    return created


def find_admin(engine: Engine, name: str) -> ConsoleAdmin | None:
    """The admin of that name, or None."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(ConsoleAdmin, name)


def list_admins(engine: Engine) -> list[ConsoleAdmin]:
    """Every admin, by name."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(ConsoleAdmin).order_by(col(ConsoleAdmin.name))))


def start_session(engine: Engine, admin: str, now: datetime | None = None) -> tuple[str, str]:
    """A new session for ``admin``: (the cookie's token, the CSRF token); expired sessions are dropped."""
    now = now or utcnow()
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with Session(engine) as session:
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < now))
        session.add(
            ConsoleSession(
                token_digest=_digest(token), admin=admin, csrf_token=csrf, expires_at=now + SESSION_LIFETIME
            )
        )
        session.commit()
    return token, csrf


def session_for(engine: Engine, token: str, now: datetime | None = None) -> SignedIn | None:
    """Who holds this cookie token, if the session is live and its admin still exists."""
    now = now or utcnow()
    with Session(engine) as session:
        row = session.get(ConsoleSession, _digest(token))
        if row is None or _aware(row.expires_at) <= now:
            return None
        admin = session.get(ConsoleAdmin, row.admin)
        if admin is None:
            return None
        return SignedIn(admin.name, admin.role, row.csrf_token)


def end_session(engine: Engine, token: str) -> None:
    """Sign this cookie's session out."""
    with Session(engine) as session:
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.token_digest) == _digest(token)))
        session.commit()


def record_action(session: Session, admin: str, action: str, target: str, **detail: Any) -> None:
    """Add an audit row to ``session`` (committed with the change it records)."""
    session.add(
        ConsoleAudit(admin=admin, action=action, target=target, detail=json.dumps(detail, default=str))
    )


def audit_rows(engine: Engine, limit: int = 100) -> list[ConsoleAudit]:
    """The newest audit rows first."""
    with Session(engine, expire_on_commit=False) as session:
        statement = select(ConsoleAudit).order_by(col(ConsoleAudit.id).desc()).limit(limit)
        return list(session.exec(statement))


# --- the admins' actions on the quarantine and the outbox (each audited in its own transaction) ----

RETRYABLE_OUTBOX = ("deferred", "failed", "cancelled")
CANCELLABLE_OUTBOX = ("queued", "deferred", "failed")


def drop_quarantined(session: Session, entry_id: int, admin: str) -> str | None:
    """Delete a held message (its ledger entry stays: the mail is not fetched again); why not, or None."""
    entry = session.get(QuarantineEntry, entry_id)
    if entry is None:
        return f"no quarantine entry {entry_id}"
    if entry.status != "held":
        return f"quarantine entry {entry_id} was already {entry.status}"
    record_action(
        session,
        admin,
        "quarantine.drop",
        f"quarantine {entry_id}",
        account=entry.account,
        key=entry.message_key,
    )
    session.delete(entry)
    return None


def retry_outgoing(session: Session, message_id: int, admin: str) -> str | None:
    """Make a deferred, failed or cancelled message due now with fresh attempts; why not, or None."""
    row = session.get(OutboxMessage, message_id)
    if row is None:
        return f"no outgoing message {message_id}"
    if row.status not in RETRYABLE_OUTBOX:
        return f"outgoing message {message_id} is {row.status}: only {', '.join(RETRYABLE_OUTBOX)} ones retry"
    record_action(
        session, admin, "outbox.retry", f"outbox {message_id}", was=row.status, attempts=row.attempts
    )
    row.status, row.next_attempt_at, row.attempts = "queued", None, 0
    session.add(row)
    return None


def cancel_outgoing(session: Session, message_id: int, admin: str) -> str | None:
    """Never send this queued, deferred or failed message; why not, or None."""
    row = session.get(OutboxMessage, message_id)
    if row is None:
        return f"no outgoing message {message_id}"
    if row.status not in CANCELLABLE_OUTBOX:
        return f"outgoing message {message_id} is {row.status}: {', '.join(CANCELLABLE_OUTBOX)} ones cancel"
    record_action(session, admin, "outbox.cancel", f"outbox {message_id}", was=row.status)
    row.status = "cancelled"
    session.add(row)
    return None
