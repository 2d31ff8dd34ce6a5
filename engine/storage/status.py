"""What the service knows about each account: last poll, messages processed, last error, state.

Written by ``engine.service`` (one row per account, updated after every pass and every failure)
and read by ``mailgate status``. The ledger stays the truth about messages; this table only says
how the watching goes. (Plain sessions here, not ``engine.storage.db.transaction``: ``db``
imports this module so that the schema includes the table.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

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
