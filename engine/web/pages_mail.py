"""The Quarantine (retry through the current pack, drop, download) and the Outbox (retry, cancel)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import and_, func
from sqlalchemy.orm import defer
from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response

from engine.config.model import AccountConfig
from engine.pipeline import retry_quarantined
from engine.rules.pack import load_pack
from engine.runtime import Runtime
from engine.storage.console import cancel_outgoing, drop_quarantined, retry_outgoing
from engine.storage.db import transaction
from engine.storage.models import LedgerEntry, OutboxMessage, QuarantineEntry
from engine.web.console import Ask, Console, NotFound
from engine.web.pages_messages import eml_download, readable_parts

OUTBOX_STATUSES = ("queued", "sending", "deferred", "failed", "sent", "cancelled")
LIST_LIMIT = 200


def reload_pack(runtime: Runtime, account: AccountConfig) -> None:
    """Read the account's pack again as it stands on disk now (ConfigError if it no longer loads)."""
    where = runtime.config.account_spans(account).of("rule_pack")
    runtime.packs[account.name] = load_pack(account.rule_pack, runtime.config.base_dir, where=where)


def quarantine_list(console: Console, ask: Ask) -> Response:
    """The held messages with their reasons (released ones below), newest first."""
    status = ask.query("status") or "held"
    with transaction(console.runtime.engine) as session:
        rows = session.exec(
            select(QuarantineEntry, func.length(QuarantineEntry.raw), LedgerEntry.sender, LedgerEntry.subject)
            .options(defer(cast(Any, QuarantineEntry.raw)))
            .outerjoin(
                LedgerEntry,
                and_(
                    col(LedgerEntry.account) == col(QuarantineEntry.account),
                    col(LedgerEntry.message_key) == col(QuarantineEntry.message_key),
                ),
            )
            .where(col(QuarantineEntry.status) == status)
            .order_by(col(QuarantineEntry.id).desc())
            .limit(LIST_LIMIT)
        ).all()
    return console.render("quarantine.html", ask, rows=rows, status=status)


def _entry(console: Console, ask: Ask) -> QuarantineEntry:
    entry_id = int(ask.request.path_params["entry_id"])
    with transaction(console.runtime.engine) as session:
        entry = session.get(QuarantineEntry, entry_id)
    if entry is None:
        raise NotFound(f"no quarantine entry {entry_id}")
    return entry


def quarantine_entry(console: Console, ask: Ask) -> Response:
    """One held message: its reason and its text (escaped), with retry and drop for admins."""
    entry = _entry(console, ask)
    return console.render("quarantine_entry.html", ask, entry=entry, parts=readable_parts(entry.raw))


def quarantine_raw(console: Console, ask: Ask) -> Response:
    """The held message, byte for byte, as a file to save."""
    entry = _entry(console, ask)
    return eml_download(entry.raw, f"quarantine-{entry.id}.eml")


def quarantine_retry(console: Console, ask: Ask) -> Response:
    """Replay the message through its account's pack as it is on disk now; show what happened."""
    entry = _entry(console, ask)
    account = console.runtime.config.account(entry.account)
    reload_pack(console.runtime, account)
    outcome = retry_quarantined(console.runtime, entry.id or 0)
    result = outcome.result
    console.audit(
        ask,
        "quarantine.retry",
        f"quarantine {entry.id}",
        released=outcome.released,
        outcome=result.outcome if result else None,
        error=outcome.error or (result.reason if result else None),
    )
    return console.render("retried.html", ask, entry=entry, outcome=outcome, result=result)


def quarantine_drop(console: Console, ask: Ask) -> Response:
    """Delete the held message (recorded in the audit); back to the quarantine."""
    entry_id = int(ask.request.path_params["entry_id"])
    with transaction(console.runtime.engine) as session:
        problem = drop_quarantined(session, entry_id, ask.who.admin)
    if problem:
        raise NotFound(problem)
    return RedirectResponse(f"/quarantine?dropped={entry_id}", status_code=303)


def outbox(console: Console, ask: Ask) -> Response:
    """Outgoing messages of one status (all if none is chosen), newest first, with counts per status."""
    status = ask.query("status")
    with transaction(console.runtime.engine) as session:
        counts = dict(
            session.exec(select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))).all()
        )
        statement = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(LIST_LIMIT)
        if status:
            statement = statement.where(col(OutboxMessage.status) == status)
        rows = session.exec(statement).all()
    return console.render(
        "outbox.html", ask, rows=rows, status=status, counts=counts, statuses=OUTBOX_STATUSES
    )


def _outbox_action(console: Console, ask: Ask, act: Any, verb: str) -> Response:
    message_id = int(ask.request.path_params["message_id"])
    with transaction(console.runtime.engine) as session:
        problem = act(session, message_id, ask.who.admin)
    if problem:
        raise NotFound(problem)
    return RedirectResponse(f"/outbox?{verb}={message_id}", status_code=303)


def outbox_retry(console: Console, ask: Ask) -> Response:
    """Queue the message again, due now (the service sends it on its next drain)."""
    return _outbox_action(console, ask, retry_outgoing, "retried")


def outbox_cancel(console: Console, ask: Ask) -> Response:
    """Never send the message."""
    return _outbox_action(console, ask, cancel_outgoing, "cancelled")


ROUTES = [
    ("/quarantine", ["GET"], quarantine_list, False),
    ("/quarantine/{entry_id:int}", ["GET"], quarantine_entry, False),
    ("/quarantine/{entry_id:int}/raw", ["GET"], quarantine_raw, False),
    ("/quarantine/{entry_id:int}/retry", ["POST"], quarantine_retry, True),
    ("/quarantine/{entry_id:int}/drop", ["POST"], quarantine_drop, True),
    ("/outbox", ["GET"], outbox, False),
    ("/outbox/{message_id:int}/retry", ["POST"], outbox_retry, True),
    ("/outbox/{message_id:int}/cancel", ["POST"], outbox_cancel, True),
]
