"""The service-desk data model: people, groups, calls, requests, tasks and the mail bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, func
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time in UTC (naive-free)."""
    return datetime.now(UTC)


class Person(SQLModel, table=True):
    """Someone who may send mail: a User, an analyst, or both."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True)
    name: str = ""
    is_user: bool = True
    is_analyst: bool = False
    take_over: bool = False


# every mail's sender is looked up by lower(email): without this, each lookup reads the whole table
PERSON_EMAIL_LOWER = Index("ix_person_email_lower", func.lower(Person.__table__.c.email))  # type: ignore[attr-defined]


class Group(SQLModel, table=True):
    """A support group that calls can be assigned to and approvals addressed to."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)


class GroupMember(SQLModel, table=True):
    """Membership of a person in a group."""

    group_id: int = Field(foreign_key="group.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)


class Call(SQLModel, table=True):
    """A call (ticket)."""

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    status: str = "open"  # open | closed
    summary: str = ""
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    user_id: int | None = Field(default=None, foreign_key="person.id")
    assigned_analyst_id: int | None = Field(default=None, foreign_key="person.id")
    assigned_group_id: int | None = Field(default=None, foreign_key="group.id")
    logging_analyst_id: int | None = Field(default=None, foreign_key="person.id")
    last_analyst_id: int | None = Field(default=None, foreign_key="person.id")
    updated_by_email: bool = False
    partition: str | None = None
    screen_set: str | None = None
    ipk_status: str | None = None
    ipk_stream: str | None = None
    account: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class Request(SQLModel, table=True):
    """A service request; its tasks form its workflow."""

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    status: str = "open"  # open | approved | rejected | closed
    summary: str = ""
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    user_id: int | None = Field(default=None, foreign_key="person.id")
    assigned_analyst_id: int | None = Field(default=None, foreign_key="person.id")
    updated_by_email: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Task(SQLModel, table=True):
    """A task of a request: plain work, an approval, or a user approval."""

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    kind: str = "task"  # task | approval | user_approval
    status: str = "open"  # open | pending | approved | rejected | closed | cancelled
    summary: str = ""
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    request_id: int | None = Field(default=None, foreign_key="request.id", index=True)
    sequence: int = 1
    approver_person_id: int | None = Field(default=None, foreign_key="person.id")
    approver_group_id: int | None = Field(default=None, foreign_key="group.id")
    assigned_analyst_id: int | None = Field(default=None, foreign_key="person.id")
    updated_by_email: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class HistoryEntry(SQLModel, table=True):
    """One line of a call's, request's or task's history."""

    id: int | None = Field(default=None, primary_key=True)
    entity: str = Field(index=True)  # call | request | task
    entity_id: int = Field(index=True)
    kind: str  # logged | email_update | note | attachment | closed | reopened | approved | rejected ...
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    security_profile: str = "Unspecified"
    author_id: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(default_factory=utcnow)
    # how the mail that wrote this entry authenticated its sender: dmarc | dkim | arc | reply_token | none
    sender_authentication: str | None = None
    message_id: str | None = None  # the ledger key of the mail that wrote it (see OriginalMessage)


class AttachedObject(SQLModel, table=True):
    """A file attached to a call, request or task."""

    id: int | None = Field(default=None, primary_key=True)
    entity: str = Field(index=True)
    entity_id: int = Field(index=True)
    filename: str
    content_type: str = "application/octet-stream"
    size: int = 0
    sha256: str = ""
    security_profile: str = "Unspecified"
    created_at: datetime = Field(default_factory=utcnow)
    # last, so that SQLite can insert a big one as zeroblob(n) without expanding it (storage/blobs.py)
    data: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))


class Forward(SQLModel, table=True):
    """A record that one analyst forwarded a call to another."""

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="call.id", index=True)
    forwarded_by_id: int | None = Field(default=None, foreign_key="person.id")
    forwarded_to_id: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(default_factory=utcnow)


class OutboxMessage(SQLModel, table=True):
    """An outgoing message waiting in the message table (replies, notifications, summaries)."""

    # the drain looks for due messages every few seconds: by status, not by reading every sent one
    __table_args__ = (Index("ix_outboxmessage_status_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(index=True)
    account: str | None = None
    to_address: str
    subject: str
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    message_id: str = Field(unique=True, index=True)
    in_reply_to: str | None = None
    references: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    headers_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    status: str = "queued"  # queued | sending | sent | deferred | failed
    entity: str | None = None
    number: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # --- delivery (engine.outgoing): the state machine lives in these columns --------------------
    html_body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    auto_submitted: str = ""  # auto-replied | auto-generated (as the header says)
    answered_address: str | None = Field(default=None, index=True)  # an auto-reply's mailbox (mailbox_key)
    attempts: int = 0  # delivery attempts started (counted when the message is claimed)
    next_attempt_at: datetime | None = None  # a queued/deferred message is due from then (None: now)
    sending_since: datetime | None = None  # when the message was claimed for sending
    sent_at: datetime | None = None
    sent_via: str | None = None  # the outgoing server's name
    server_reply: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class LedgerEntry(SQLModel, table=True):
    """One processed message per account: what was decided; its presence makes reprocessing a no-op."""

    # the console's communication log pages newest first (by id) within each search
    __table_args__ = (
        UniqueConstraint("account", "message_key"),
        Index("ix_ledgerentry_outcome_id", "outcome", "id"),
        Index("ix_ledgerentry_rule_id", "rule", "id"),
        Index("ix_ledgerentry_sender_id", "sender", "id"),
        Index("ix_ledgerentry_number_id", "number", "id"),
        Index("ix_ledgerentry_processed_at", "processed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(index=True)
    # found by (account, message_key), the unique constraint's index: no index of its own, which
    # would cost every message a write at a random place (`message show` asks account by account)
    message_key: str
    message_id: str | None = None
    outcome: str
    rule: str | None = None
    entity: str | None = None
    number: int | None = None
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    processed_at: datetime = Field(default_factory=utcnow)
    # a digest of the mail's From, Date and Subject: a different mail reusing the Message-ID differs
    fingerprint: str | None = None
    # --- for the console's communication log (engine/storage/message_log.py) ---------------------
    sender: str | None = None  # the From address, lower case (bounded: one address)
    subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # cut to 500
    # the decision trace as `explain` reports it, JSON compressed with zlib (None: not traced)
    trace: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class OriginalMessage(SQLModel, table=True):
    """The raw bytes of a processed mail, compressed, kept for ``processing.keep_originals_days``.

    Keyed like its ledger entry (account, message key), so the ledger, the history entries the
    mail wrote (``HistoryEntry.message_id``) and ``mailgate message show`` all lead to it.
    """

    __table_args__ = (UniqueConstraint("account", "message_key"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    message_key: str = Field(index=True)  # bounded (a long Message-ID is keyed by its digest)
    message_id: str | None = None  # unbounded, so not indexed: found through its key
    received_at: datetime = Field(default_factory=utcnow, index=True)
    size: int = 0
    compression: str = "zlib"
    data: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))


class QuarantineEntry(SQLModel, table=True):
    """A message that could not be handled, kept whole with its reason until an admin replays it."""

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(index=True)
    message_key: str = Field(index=True)
    origin: str = ""
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    raw: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    status: str = "held"  # held | released
    received_at: datetime = Field(default_factory=utcnow)
    released_at: datetime | None = None


class NumberSequence(SQLModel, table=True):
    """The next number to give a new call, request or task."""

    name: str = Field(primary_key=True)
    next_value: int = 1


class ReplyTokenSecret(SQLModel, table=True):
    """A secret that signs the reply tokens in our Message-IDs (engine/identity/reply_tokens.py).

    The newest secret not yet retired signs; a retired one still verifies until ``verify_until``.
    Kept in the database, not in a file: see engine/storage/token_keys.py.
    """

    id: int | None = Field(default=None, primary_key=True)
    secret: str  # 64 hex digits (32 random bytes)
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None  # when a newer secret took over signing
    verify_until: datetime | None = None  # a retired secret's tokens are refused from then on
