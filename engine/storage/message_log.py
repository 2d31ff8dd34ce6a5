"""The communication log: the ledger as the console's Messages page reads it, newest first.

A search pages by keyset (``id < before``, newest first, ``limit`` rows), never by offset, so the
hundredth page costs what the first does. Each exact filter has an index ending in ``id``
(revision r7: outcome, rule, sender, number), so a search reads its page from one index range;
a date is a range of ``processed_at``. The subject is matched as a substring, which no index
helps: a search by subject alone reads at most ``SUBJECT_WINDOW`` entries per page (the page
stops early once it is full), and its "older" link continues below the part it read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.storage.models import LedgerEntry, OutboxMessage
from engine.storage.originals import original_of

PAGE_SIZE = 50
SUBJECT_WINDOW = 50_000  # ledger entries a subject-only search reads per page, at most


@dataclass(frozen=True)
class LogSearch:
    """What the Messages page searches for; empty fields do not filter."""

    sender: str = ""
    subject: str = ""
    outcome: str = ""
    rule: str = ""
    number: int | None = None
    day: date | None = None
    account: str = ""
    before: int | None = None  # the keyset: only entries with a smaller id (older)

    def has_indexed_filter(self) -> bool:
        """Whether an indexed column narrows the search (else a subject search is windowed)."""
        return bool(self.sender or self.outcome or self.rule or self.number is not None or self.day)

    def is_empty(self) -> bool:
        """Whether nothing is searched for (the plain newest-first log)."""
        return not (self.sender or self.subject or self.outcome or self.rule or self.account) and (
            self.number is None and self.day is None
        )


@dataclass(frozen=True)
class LogRow:
    """One line of the communication log."""

    id: int
    account: str
    processed_at: datetime
    sender: str | None
    subject: str | None
    outcome: str
    rule: str | None
    entity: str | None
    number: int | None
    message_id: str | None


_LOG_COLUMNS = (
    col(LedgerEntry.id),
    col(LedgerEntry.account),
    col(LedgerEntry.processed_at),
    col(LedgerEntry.sender),
    col(LedgerEntry.subject),
    col(LedgerEntry.outcome),
    col(LedgerEntry.rule),
    col(LedgerEntry.entity),
    col(LedgerEntry.number),
    col(LedgerEntry.message_id),
)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class LogPage:
    """A page of the log, and the ``before`` of the next (older) page, None at the oldest."""

    rows: list[LogRow]
    older: int | None


def search_log(
    session: Session, search: LogSearch, limit: int = PAGE_SIZE, window: int = SUBJECT_WINDOW
) -> LogPage:
    """One page of the log, newest first, matching ``search``."""
    statement = sa_select(*_LOG_COLUMNS)
    floor: int | None = None  # a windowed subject search reads ids from here up
    if search.subject and not search.has_indexed_filter():
        top = search.before
        if top is None:
            top = int(session.execute(sa_select(func.max(col(LedgerEntry.id)))).scalar() or 0) + 1
        floor = max(top - window, 1)
        statement = statement.where(col(LedgerEntry.id) >= floor)
    if search.before is not None:
        statement = statement.where(col(LedgerEntry.id) < search.before)
    if search.sender:
        statement = statement.where(col(LedgerEntry.sender) == search.sender.strip().lower())
    if search.outcome:
        statement = statement.where(col(LedgerEntry.outcome) == search.outcome.strip())
    if search.rule:
        statement = statement.where(col(LedgerEntry.rule) == search.rule.strip())
    if search.number is not None:
        statement = statement.where(col(LedgerEntry.number) == search.number)
    if search.account:
        statement = statement.where(col(LedgerEntry.account) == search.account.strip())
    if search.day is not None:
        start = datetime.combine(search.day, time(0), tzinfo=UTC)
        statement = statement.where(
            col(LedgerEntry.processed_at) >= start, col(LedgerEntry.processed_at) < start + timedelta(days=1)
        )
    if search.subject:
        pattern = _like_pattern(search.subject.strip().lower())
        statement = statement.where(func.lower(col(LedgerEntry.subject)).like(pattern, escape="\\"))
    statement = statement.order_by(col(LedgerEntry.id).desc()).limit(limit)
    rows = [LogRow(*row) for row in session.execute(statement).all()]
    if len(rows) == limit:
        return LogPage(rows, rows[-1].id)
    return LogPage(rows, floor if floor is not None and floor > 1 else None)


def log_entry(session: Session, entry_id: int) -> LedgerEntry | None:
    """One ledger entry, trace included."""
    return session.get(LedgerEntry, entry_id)


def replies_of(session: Session, entry: LedgerEntry) -> list[OutboxMessage]:
    """The outgoing messages a processed mail queued (they answer its Message-ID), oldest first."""
    if not entry.message_id:
        return []
    statement = (
        select(OutboxMessage)
        .where(col(OutboxMessage.in_reply_to) == entry.message_id)
        .order_by(col(OutboxMessage.id))
    )
    return list(session.exec(statement))


def has_original(session: Session, entry: LedgerEntry) -> bool:
    """Whether the mail's original is still kept."""
    return original_of(session, entry.account, entry.message_key) is not None


def outcomes_since(session: Session, since: datetime) -> dict[str, Counter[str]]:
    """Messages per outcome per account processed since ``since`` (the Accounts page's "today").

    Counted here rather than by GROUP BY: grouping, SQLite prefers reading the whole ledger in
    account order to the ``processed_at`` range of the day.
    """
    statement = sa_select(col(LedgerEntry.account), col(LedgerEntry.outcome)).where(
        col(LedgerEntry.processed_at) >= since
    )
    counts: dict[str, Counter[str]] = {}
    for account, outcome in session.execute(statement):
        counts.setdefault(account, Counter())[outcome] += 1
    return counts
