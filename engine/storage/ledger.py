"""The ledger: one entry per processed mail and account, the proof that a mail was handled once.

A mail's ledger entry is written in the same transaction as its effects (``engine.pipeline``); a
mail whose key the account's ledger holds already is a ``duplicate`` and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, delete, insert, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from engine.storage.direct import pipelined_batch, run_statement, run_statement_on
from engine.storage.models import LedgerEntry, utcnow

_LOOKUP = sa_select(col(LedgerEntry.id), col(LedgerEntry.fingerprint)).where(
    col(LedgerEntry.account) == bindparam("account"), col(LedgerEntry.message_key) == bindparam("key")
)
_INSERT = insert(LedgerEntry)
_DELETE = delete(LedgerEntry).where(
    col(LedgerEntry.account) == bindparam("account"), col(LedgerEntry.message_key) == bindparam("key")
)

_DETAIL_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(detail, sort_keys=True), without a new encoder


_LOOKUP_MANY = sa_select(col(LedgerEntry.message_key), col(LedgerEntry.fingerprint)).where(
    col(LedgerEntry.account) == bindparam("account"),
    col(LedgerEntry.message_key).in_(bindparam("keys", expanding=True)),
)


def look_up_ahead(account: str, keys: list[str]) -> None:
    """In a batch in pipeline mode (PostgreSQL), ask the ledger for all the batch's keys at once.

    ``recordable_key`` then answers for these keys without a round trip each; an entry the batch
    writes is remembered (and forgotten again if its message's savepoint is rolled back).
    Elsewhere this does nothing.
    """
    batch = pipelined_batch()
    if batch is None or not keys:
        return
    found = run_statement_on(batch.connection, _LOOKUP_MANY, {"account": account, "keys": sorted(set(keys))})
    for key, fingerprint in found.rows:
        batch.ledger[(account, key)] = fingerprint
    batch.ledger_asked.update((account, key) for key in keys)


def _ledger_has(session: Session, account: str, key: str) -> bool:
    return run_statement(session, _LOOKUP, {"account": account, "key": key}).first() is not None


def recordable_key(session: Session, account: str, key: str, fingerprint: str | None) -> str | None:
    """The key to record this mail under, or None when the ledger has it already (a duplicate).

    Some mailers reuse a Message-ID for a different message. Each ledger entry keeps a fingerprint
    of its mail (From, Date, Subject: ``IncomingMessage.fingerprint``); a mail whose Message-ID is
    taken by a mail with another fingerprint gets a key of its own (``<key>#<fingerprint>``), while
    a re-delivery of the same mail, even with Received headers added, stays a duplicate. An entry
    without a fingerprint (written before they were kept) counts as the same mail.
    """
    batch = pipelined_batch()
    if batch is not None and (account, key) in batch.ledger_asked:
        known = batch.ledger.get((account, key), _ABSENT)
        found = None if known is _ABSENT else (None, known)
    else:
        found = run_statement(session, _LOOKUP, {"account": account, "key": key}).first()
    if found is None:
        return key
    if found[1] is None or fingerprint is None or found[1] == fingerprint:
        return None
    own = f"{key}#{fingerprint}"
    return None if _ledger_has(session, account, own) else own


def record_outcome(
    session: Session,
    *,
    account: str,
    key: str,
    message_id: str | None,
    outcome: str,
    rule: str | None,
    entity: str | None,
    number: int | None,
    detail: dict[str, Any],
    fingerprint: str | None,
    sender: str | None = None,
    subject: str | None = None,
    trace: bytes | None = None,
) -> None:
    """Write the mail's ledger entry (``detail`` is kept as JSON); the caller's transaction commits it.

    ``sender``, ``subject`` and ``trace`` (the decision as ``explain`` reports it, compressed) are
    what the console's communication log shows; None for a mail that could not be read.
    """
    batch = pipelined_batch()
    if batch is not None:
        batch.ledger[(account, key)] = fingerprint
        batch.ledger_asked.add((account, key))
        batch.recorded.append((account, key))
    run_statement(
        session,
        _INSERT,
        {
            "account": account,
            "message_key": key,
            "message_id": message_id,
            "outcome": outcome,
            "rule": rule,
            "entity": entity,
            "number": number,
            "detail": _DETAIL_JSON.encode(detail),
            "processed_at": utcnow(),
            "fingerprint": fingerprint,
            "sender": sender,
            "subject": subject,
            "trace": trace,
        },
    )


_ABSENT: Any = object()


def forget(session: Session, account: str, key: str) -> None:
    """Remove the mail's ledger entries (a quarantined mail about to be retried is processed anew)."""
    batch = pipelined_batch()
    if batch is not None:
        batch.ledger.pop((account, key), None)
    run_statement(session, _DELETE, {"account": account, "key": key})


# The accounts the ledger holds, read by skipping from one to the next along the index on
# (account, message_key): one index probe per account, however long the ledger (both databases).
_ACCOUNTS = text(
    "WITH RECURSIVE held(account) AS ("
    " SELECT min(account) FROM ledgerentry"
    " UNION ALL"
    " SELECT (SELECT min(l.account) FROM ledgerentry l WHERE l.account > held.account)"
    " FROM held WHERE held.account IS NOT NULL"
    ") SELECT account FROM held WHERE account IS NOT NULL"
)


def ledger_accounts(session: Session) -> list[str]:
    """Every account with an entry in the ledger, in order, without reading the ledger through."""
    return [str(account) for account in session.execute(_ACCOUNTS).scalars()]
