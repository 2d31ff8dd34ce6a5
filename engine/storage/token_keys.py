"""The installation's reply-token secrets: created on first open, rotated with a grace period.

Where they live, and why: in the database (table ``replytokensecret``), not in a file. Every
process that signs or verifies a token (``mailgate run``, ``deliver`` started by the MTA under its
own user, ``process``, a second host on the same PostgreSQL) already shares the database and
nothing else; a rotation is one transaction that all of them see at once; a backup restores
secrets together with the outbox whose Message-IDs they signed. Whoever can read the database can
already change every call in it directly, so the secret gives them nothing more. The secret is
never printed (``mailgate secret list`` shows only ids and dates) and never written to the config.

Rotation (``mailgate secret rotate``) adds a new secret, which signs from then on, and retires the
others: their tokens still verify for the grace period (replies to mail sent before the rotation
keep working), then are refused. A grace of zero refuses them at once (a leaked secret).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.identity.reply_tokens import new_secret
from engine.storage.direct import run_statement
from engine.storage.models import ReplyTokenSecret, utcnow

DEFAULT_GRACE = timedelta(days=90)
_SESSION_KEY = "mailgate.token_secrets"


@dataclass(frozen=True)
class TokenSecrets:
    """The secret that signs new tokens (None if there is none) and every secret that still verifies."""

    signing: bytes | None = field(repr=False)
    verifying: tuple[bytes, ...] = field(repr=False)


_USABLE = (
    sa_select(col(ReplyTokenSecret.secret), col(ReplyTokenSecret.retired_at))
    .where(
        or_(
            col(ReplyTokenSecret.retired_at).is_(None),
            col(ReplyTokenSecret.verify_until) > bindparam("now"),
        )
    )
    .order_by(col(ReplyTokenSecret.id).desc())
)


def token_secrets(session: Session, now: datetime | None = None) -> TokenSecrets:
    """The secrets in force, read once per database transaction and kept with it; no write.

    Each message of a service batch has a session of its own (a savepoint) in the batch's one
    transaction: they share what the first of them read, instead of a query for each message.
    """
    cached = session.info.get(_SESSION_KEY)
    if isinstance(cached, TokenSecrets):
        return cached
    connection = session.connection()
    transaction = connection.get_transaction()
    held = connection.info.get(_SESSION_KEY)
    if held is not None and transaction is not None and held[0] is transaction:
        found: TokenSecrets = held[1]
    else:
        rows: list[Any] = run_statement(session, _USABLE, {"now": now or utcnow()}).rows
        current = [bytes.fromhex(r.secret) for r in rows if r.retired_at is None]
        verifying = tuple(dict.fromkeys([*current, *(bytes.fromhex(r.secret) for r in rows)]))
        found = TokenSecrets(current[0] if current else None, verifying)
        connection.info[_SESSION_KEY] = (transaction, found)
    session.info[_SESSION_KEY] = found
    return found


def signing_secret(session: Session) -> bytes:
    """The secret new tokens are signed with; made in the session's transaction if there is none.

    ``open_database`` makes the first one, so one is missing only if it was deleted by hand since.
    """
    found = token_secrets(session)
    if found.signing is not None:
        return found.signing
    secret = new_secret()
    session.add(ReplyTokenSecret(secret=secret))
    session.flush()
    made = bytes.fromhex(secret)
    session.info[_SESSION_KEY] = TokenSecrets(made, (made, *found.verifying))
    session.connection().info.pop(_SESSION_KEY, None)  # the savepoint that made it may roll back
    return made


def ensure_token_secret(engine: Engine) -> None:
    """Create the first secret if the database has none in force (at every open: first start, init).

    Two processes opening a new database at once may both make one: both then verify, and the
    newer signs, which is as safe as one.
    """
    with Session(engine) as session:
        current = session.exec(
            select(ReplyTokenSecret.id).where(col(ReplyTokenSecret.retired_at).is_(None)).limit(1)
        ).first()
        if current is None:
            session.add(ReplyTokenSecret(secret=new_secret()))
            session.commit()


@dataclass(frozen=True)
class Rotation:
    """What ``rotate_token_secret`` did: the new secret's id and the retired ones' last day."""

    new_id: int
    retired_ids: tuple[int, ...]
    verify_until: datetime


def rotate_token_secret(
    engine: Engine, grace: timedelta = DEFAULT_GRACE, now: datetime | None = None
) -> Rotation:
    """Add a new signing secret; the current ones verify for ``grace`` more, then are refused."""
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    moment = now or utcnow()
    with Session(engine) as session:
        retiring = list(
            session.exec(select(ReplyTokenSecret.id).where(col(ReplyTokenSecret.retired_at).is_(None)))
        )
        session.exec(
            update(ReplyTokenSecret)
            .where(col(ReplyTokenSecret.retired_at).is_(None))
            .values(retired_at=moment, verify_until=moment + grace)
        )
        # a secret retired earlier never gets a longer grace than it had
        session.exec(
            update(ReplyTokenSecret)
            .where(col(ReplyTokenSecret.verify_until) > moment + grace)
            .values(verify_until=moment + grace)
        )
        fresh = ReplyTokenSecret(secret=new_secret(), created_at=moment)
        session.add(fresh)
        session.commit()
        assert fresh.id is not None
        return Rotation(fresh.id, tuple(i for i in retiring if i is not None), moment + grace)


def token_secret_rows(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every secret's id, dates and state (``signing``, ``verifying`` or ``expired``), never the secret."""
    moment = now or utcnow()
    with Session(engine) as session:
        rows = list(session.exec(select(ReplyTokenSecret).order_by(col(ReplyTokenSecret.id))))
    found = []
    for row in rows:
        until = row.verify_until
        if row.retired_at is None:
            state = "signing"
        elif until is not None and _aware(until) > moment:
            state = "verifying"
        else:
            state = "expired"
        found.append(
            {
                "id": row.id,
                "state": state,
                "created_at": row.created_at,
                "retired_at": row.retired_at,
                "verify_until": until,
            }
        )
    return found


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
