"""What the service knows about each account: last poll, messages processed, last error, state.

Written by ``engine.service`` (one row per account, updated after every pass and every failure)
and read by ``mailgate status``. The ledger stays the truth about messages; this table only says
how the watching goes. (Plain sessions here, not ``engine.storage.db.transaction``: ``db``
imports this module so that the schema includes the table.)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from engine.config.model import AccountConfig
from engine.storage.models import utcnow

STATE_OK = "ok"
STATE_RETRYING = "retrying"
STATE_AUTH_FAILED = "auth_failed"
STATE_FAILED = "failed"  # the account cannot be watched at all (e.g. its connector cannot be loaded)


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
    engine: Engine, account: str, state: str, error: str, processed: int, retry_at: datetime | None
) -> None:
    """A pass failed (``processed`` messages were handled before it did); remember why and when."""
    now = utcnow()
    with Session(engine) as session:
        row = session.get(AccountStatus, account) or AccountStatus(account=account)
        row.state, row.last_error, row.last_error_at = state, error, now
        row.retry_at, row.updated_at = retry_at, now
        row.messages_processed += processed
        session.add(row)
        session.commit()


def account_statuses(engine: Engine) -> dict[str, AccountStatus]:
    """Every account's stored status, by account name."""
    with Session(engine, expire_on_commit=False) as session:
        return {row.account: row for row in session.exec(select(AccountStatus))}


def _when(moment: datetime | None) -> str | None:
    """A stored moment as ``YYYY-MM-DD HH:MM:SSZ`` (stored times are UTC, with or without a zone)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def status_view(engine: Engine, accounts: Iterable[AccountConfig]) -> list[dict[str, Any]]:
    """One row per configured account, then any other account with a stored status (``mailgate status``)."""
    stored = account_statuses(engine)
    rows: list[dict[str, Any]] = []
    listed: list[tuple[str, bool | None, str | None]] = [
        (a.name, a.active, a.connector_type) for a in accounts
    ]
    listed += [(name, None, None) for name in stored if name not in {n for n, _, _ in listed}]
    for name, active, connector in listed:
        row = stored.get(name)
        if row is None:
            state = "inactive" if active is False else "never_polled"
        else:
            state = row.state if active is not False else f"inactive (was {row.state})"
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
            }
        )
    return rows
