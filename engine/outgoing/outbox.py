"""Queuing outgoing messages into the message table (the outbox): replies, notifications, summaries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from engine.config.model import Config
from engine.identity.reply_tokens import ItemRef, signed_message_id
from engine.mail.message import IncomingMessage
from engine.mail.sender import mailbox_key
from engine.storage.direct import pipelined_batch, run_statement, run_statement_on
from engine.storage.models import OutboxMessage
from engine.storage.rows import build_row, insert_transient
from engine.storage.token_keys import signing_secret

_HEADERS_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(headers, sort_keys=True), without a new encoder


def new_message_id(
    session: Session, config: Config, *, to: str, entity: str | None, number: int | None
) -> str:
    """A fresh Message-ID on our mail domain (without angle brackets) with a reply token.

    The token binds the item (``entity``, ``number``; none when either is None) and the recipient
    ``to`` (engine/identity/reply_tokens.py), signed with the installation's current secret.
    """
    item = ItemRef(entity, number) if entity is not None and number is not None else None
    secret = signing_secret(session)
    return signed_message_id(secret, recipient=to, item=item, domain=config.mail_domain)


def entity_tag(keywords_tag: str, number: int) -> str:
    """The subject tag that threads an answer back to an item, e.g. ``[CALL#12]``."""
    return f"[{keywords_tag}#{number}]"


def queue_message(
    session: Session,
    config: Config,
    *,
    type: str,
    to: str,
    subject: str,
    body: str,
    html: str = "",
    account: str | None,
    answering: IncomingMessage | None,
    auto_submitted: str,
    entity: str | None = None,
    number: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> OutboxMessage:
    """Add one message to the outbox, threaded to ``answering`` when it answers an incoming mail."""
    headers: dict[str, Any] = {"Auto-Submitted": auto_submitted, "X-Auto-Response-Suppress": "All"}
    headers.update(extra_headers or {})
    in_reply_to: str | None = None
    references = ""
    if answering is not None and answering.message_id:
        in_reply_to = answering.message_id
        refs = [*answering.references, answering.message_id]
        references = " ".join(f"<{r}>" for r in dict.fromkeys(refs))
    message = build_row(
        OutboxMessage,
        type=type,
        account=account,
        to_address=to,
        subject=subject,
        body=body,
        html_body=html,
        auto_submitted=auto_submitted,
        answered_address=mailbox_key(to) if auto_submitted == "auto-replied" else None,
        message_id=new_message_id(session, config, to=to, entity=entity, number=number),
        in_reply_to=in_reply_to,
        references=references,
        headers_json=_HEADERS_JSON.encode(headers),
        entity=entity,
        number=number,
    )
    session.add(message)
    return message


# built once: this runs for every automatic reply (the per-sender rate limit)
_COUNT_RECENT_REPLIES = sa_select(func.count()).where(
    col(OutboxMessage.answered_address) == bindparam("address"),
    col(OutboxMessage.created_at) >= bindparam("since"),
)


_RECENT_REPLIES_TO_MANY = sa_select(col(OutboxMessage.answered_address), col(OutboxMessage.created_at)).where(
    col(OutboxMessage.answered_address).in_(bindparam("addresses", expanding=True)),
    col(OutboxMessage.created_at) >= bindparam("since"),
)
REPLY_WINDOW = timedelta(hours=1)  # the per-sender rate limit counts the automatic replies of an hour


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def look_up_recent_replies(addresses: Iterable[str], now: datetime) -> None:
    """In a batch in pipeline mode (PostgreSQL), read the recent automatic replies to these
    addresses' mailboxes at once, those of the hour before ``now`` (the batch's start).

    ``recent_replies_to`` then counts them, and those the batch queues, for any ``since`` not
    before that hour without a round trip. Elsewhere this does nothing.
    """
    batch = pipelined_batch()
    wanted = sorted({mailbox_key(address) for address in addresses})
    if batch is None or not wanted:
        return
    since = now - REPLY_WINDOW
    found = run_statement_on(batch.connection, _RECENT_REPLIES_TO_MANY, {"addresses": wanted, "since": since})
    replies: dict[str, list[Any]] = {address: [] for address in wanted}
    for address, created_at in found.rows:
        replies[address].append(_aware(created_at))
    batch.replies, batch.replies_since, batch.replies_queued = replies, _aware(since), []


_OURS_AMONG = sa_select(col(OutboxMessage.message_id)).where(
    col(OutboxMessage.message_id).in_(bindparam("ids", expanding=True))
)


_BODIES_OF_OURS = sa_select(col(OutboxMessage.body)).where(
    col(OutboxMessage.message_id).in_(bindparam("ids", expanding=True))
)


def bodies_of_our_messages(session: Session, ids: Sequence[str]) -> list[str]:
    """The text of the outgoing messages of ours among these Message-IDs (those a reply answers)."""
    if not ids:
        return []
    return [str(row[0]) for row in run_statement(session, _BODIES_OF_OURS, {"ids": sorted(set(ids))}).rows]


def look_up_our_messages(ids: Iterable[str]) -> None:
    """In a batch in pipeline mode (PostgreSQL), ask at once which of these Message-IDs (those
    the batch's mails answer or refer to) are of outgoing messages of ours (``known_ours``).
    Elsewhere this does nothing."""
    batch = pipelined_batch()
    wanted = sorted(set(ids))
    if batch is None or not wanted:
        return
    found = {row[0] for row in run_statement_on(batch.connection, _OURS_AMONG, {"ids": wanted}).rows}
    batch.ours = {message_id: message_id in found for message_id in wanted}


def known_ours(ids: list[str]) -> bool | None:
    """Whether one of these Message-IDs is of an outgoing message of ours, if the batch read all
    of them ahead; None when it did not (ask the database)."""
    batch = pipelined_batch()
    if batch is None or not batch.ours:
        return None
    ours = batch.ours
    if not all(message_id in ours for message_id in ids):
        return None
    return any(ours[message_id] for message_id in ids)


def recent_replies_to(session: Session, address: str, since: datetime) -> int:
    """How many automatic replies were queued to ``address``'s mailbox since then (plus tags ignored).

    Replies are counted by ``mailbox_key``: ``Ann+1@example.com`` and ``ann+2@example.com`` are
    both ``ann@example.com``, so plus-tag variants of one mailbox share its limit.
    """
    key = mailbox_key(address)
    batch = pipelined_batch()
    if batch is not None and key in batch.replies and _aware(since) >= batch.replies_since:
        since = _aware(since)
        return sum(1 for created_at in batch.replies[key] if created_at >= since)
    params = {"address": key, "since": since}
    return int(run_statement(session, _COUNT_RECENT_REPLIES, params).scalar() or 0)


def write_queued_messages(session: Session) -> None:
    """Write the outgoing messages the actions queued with plain INSERTs, in the order queued.

    An outbox row references nothing, and nothing references or changes it in the same
    transaction: each is written and given its id, and its object leaves the session (the ORM
    would attach it as persistent, at several times the cost of the INSERT, for nothing).
    """
    batch = pipelined_batch()
    for row in [row for row in session.new if isinstance(row, OutboxMessage)]:
        session.expunge(row)  # pending -> transient: written below instead of by the flush
        insert_transient(session, row)
        if batch is not None and batch.ours:  # a Message-ID of ours now: asked again if referred to
            batch.ours.pop(row.message_id, None)
        if batch is not None and row.answered_address in batch.replies:  # counted by the next messages
            batch.replies[row.answered_address].append(_aware(row.created_at))
            batch.replies_queued.append(row.answered_address)
