"""The path of one message: parse, check the ledger, decide, act, record — all or nothing.

A message's effects and its ledger entry are committed in one transaction; if anything fails
(a broken mail, an action error, the time limit), nothing of it is kept except a quarantine entry
holding the whole message and the reason. A message already in the account's ledger is a
``duplicate`` and changes nothing.

Longer than 400 lines because it is the one place where the order of a message's steps and the
edges of its transaction are written, with every way out of it (duplicate, quarantine, outage);
what each step does lives elsewhere (engine/mail, engine/rules, engine/actions, engine/storage).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from engine.actions.base import ActionContext
from engine.config.model import AccountConfig
from engine.errors import MailError, MailgateError
from engine.mail.authentication import SenderAuthentication, authenticate_sender
from engine.mail.header_bounds import ledger_key
from engine.mail.message import IncomingMessage, parse_message
from engine.mail.text import clean_line, fix_escaped_bytes
from engine.outgoing.outbox import write_queued_messages
from engine.rules.decision import decide
from engine.rules.explain import decision_trace
from engine.rules.gather import load_rows
from engine.rules.subject import ParsedSubject
from engine.runtime import Runtime
from engine.storage.db import DatabaseError, transaction
from engine.storage.failures import describe_database_error, is_outage
from engine.storage.ledger import forget, record_outcome, recordable_key
from engine.storage.models import OutboxMessage
from engine.storage.originals import keep_original
from engine.storage.quarantine import hold, release, take_for_retry
from engine.timelimit import ProcessingTimeout, time_limit

log = logging.getLogger("mailgate.pipeline")


@dataclass(frozen=True)
class Addressed:
    """Where an outgoing message goes and what it is called."""

    to: str
    subject: str


@dataclass(frozen=True)
class ProcessResult:
    """What happened to one message (the ``--json`` line of ``mailgate process``)."""

    account: str
    origin: str
    message_id: str | None
    key: str
    outcome: str
    rule: str | None = None
    entity: str | None = None
    number: int | None = None
    replies: tuple[Addressed, ...] = ()
    notifications: tuple[Addressed, ...] = ()
    reason: str | None = None
    quarantine_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object printed for this message."""
        data = asdict(self)
        data["replies"] = [asdict(a) for a in self.replies]
        data["notifications"] = [asdict(a) for a in self.notifications]
        return data


class NoRuleMatched(MailgateError):
    """No rule of the account's pack holds for this message; ``trace`` is its decision trace."""

    def __init__(self, message: str, trace: bytes | None = None) -> None:
        super().__init__(message)
        self.trace = trace


MAX_LOGGED_SUBJECT_CHARS = 500  # the communication log keeps this much of a subject


def _logged(message: IncomingMessage, trace: bytes | None) -> dict[str, Any]:
    """What the communication log keeps of a message: its sender, (the start of) its subject, the trace."""
    return {
        "sender": message.from_address.lower()[:512],
        "subject": _storable(message.subject, MAX_LOGGED_SUBJECT_CHARS),
        "trace": trace,
    }


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^\r\n>]+)>?", re.IGNORECASE | re.MULTILINE)


def fallback_key(raw: bytes) -> tuple[str | None, str]:
    """(Message-ID, ledger key) of a message we could not parse, read straight from its bytes."""
    ends = [end for end in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if end >= 0]  # LF or CRLF mail
    head = raw[: min(ends)] if ends else raw
    digest = hashlib.sha256(raw).hexdigest()
    match = _MESSAGE_ID.search(head)
    if match:
        message_id = clean_line(match.group(1).decode("ascii", "replace"))
        if message_id:
            return message_id, ledger_key(message_id, digest)
    return None, ledger_key(None, digest)


def _addressed(messages: list[OutboxMessage]) -> tuple[Addressed, ...]:
    return tuple(Addressed(m.to_address, m.subject) for m in messages)


def read_message(raw: bytes, our_addresses: frozenset[str]) -> IncomingMessage | MailError:
    """The parsed message, or the ``MailError`` saying why it cannot be read (never raises)."""
    try:
        return parse_message(raw, our_addresses=our_addresses)
    except MailError as exc:
        return exc


def process_message(
    runtime: Runtime,
    account: AccountConfig,
    raw: bytes,
    origin: str = "",
    *,
    retry_of: int | None = None,
    parsed: IncomingMessage | MailError | None = None,
    compressed_original: bytes | bool | None = None,
    subject: ParsedSubject | None = None,
) -> ProcessResult:
    """Run one raw message through the account's pack; never raises for a bad message.

    ``parsed``: ``read_message(raw, runtime.our_addresses)`` if the caller has it already (the
    service parses ahead, in another process); else the message is parsed here. Likewise
    ``compressed_original``: ``compress_original(raw)``, the original as it is kept; or True when
    the parse worker has kept it already (in the originals' file, engine.storage.original_file).
    And ``subject``: ``parse_subject(message.subject, pack.keywords)`` with the account's pack's
    keywords, if the caller has it (the parse worker reads it too).

    The time limit (``processing.time_limit_seconds``) covers reading the message too.

    Raises ``DatabaseError`` only when the database itself is unavailable (``is_outage``), or when
    not even the message's quarantine can be written: nothing of it was kept, and the message must
    stay where it is until the database is back. Any other database error quarantines the message.
    """
    try:
        return _process(runtime, account, raw, origin, retry_of, parsed, compressed_original, subject)
    except DBAPIError as exc:
        # the database is unreachable or locked: not the message's fault, so it is not quarantined;
        # the caller leaves it in its mailbox and tries again later (the MTA, for `deliver`)
        raise DatabaseError(f"database unavailable: {describe_database_error(exc)}") from None


def _database_failure(exc: DBAPIError) -> str:
    """The quarantine reason for a database error the message caused; re-raises an outage."""
    if is_outage(exc):
        raise exc
    return f"database error: {describe_database_error(exc)}"


def _process(
    runtime: Runtime,
    account: AccountConfig,
    raw: bytes,
    origin: str,
    retry_of: int | None,
    parsed: IncomingMessage | MailError | None,
    compressed_original: bytes | bool | None = None,
    subject: ParsedSubject | None = None,
) -> ProcessResult:
    limit = runtime.config.time_limit_seconds
    started = time.monotonic()
    message: IncomingMessage | MailError
    if parsed is not None:
        message = parsed
    else:
        try:
            with time_limit(limit):
                message = read_message(raw, runtime.our_addresses)
        except ProcessingTimeout as exc:
            message = MailError(f"{exc} while reading the message")
    if isinstance(message, MailError):
        message_id, key = fallback_key(raw)
        return _quarantine(runtime, account, raw, origin, message_id, key, message.reason, retry_of)
    trace: bytes | None = None
    try:
        remaining = max(limit - (time.monotonic() - started), 0.001)  # one limit for reading and deciding
        result = _decide_and_act(
            runtime, account, message, origin, raw, remaining, compressed_original, subject
        )
    except IntegrityError as exc:
        if _recorded(runtime, account.name, message.key, message.fingerprint):  # recorded meanwhile
            return ProcessResult(account.name, origin, message.message_id, message.key, "duplicate")
        reason = _database_failure(exc)
    except DBAPIError as exc:
        reason = _database_failure(exc)  # an outage is raised on: see process_message
    except ProcessingTimeout as exc:
        reason = str(exc)
    except NoRuleMatched as exc:
        reason, trace = str(exc), exc.trace
    except MailgateError as exc:
        reason = f"processing failed: {exc}"
    except Exception as exc:  # an unexpected bug must cost one message, never the run
        log.exception("unexpected error processing %s in account %s", message.key, account.name)
        reason = f"internal error: {type(exc).__name__}: {exc}"
    else:
        return result  # reported by the caller: one log line per message (the service's event=processed)
    return _quarantine(
        runtime,
        account,
        raw,
        origin,
        message.message_id,
        message.key,
        reason,
        retry_of,
        message.fingerprint,
        logged=_logged(message, trace),
    )


def _recorded(runtime: Runtime, account: str, key: str, fingerprint: str | None) -> bool:
    with transaction(runtime.engine) as session:
        return recordable_key(session, account, key, fingerprint) is None


def _quarantine(
    runtime: Runtime,
    account: AccountConfig,
    raw: bytes,
    origin: str,
    message_id: str | None,
    key: str,
    reason: str,
    retry_of: int | None,
    fingerprint: str | None = None,
    logged: dict[str, Any] | None = None,
) -> ProcessResult:
    """``quarantine``; if the message's own values cannot be stored, under the digest of its bytes."""
    try:
        return quarantine(
            runtime,
            account,
            raw,
            origin,
            message_id,
            key,
            reason,
            retry_of=retry_of,
            fingerprint=fingerprint,
            logged=logged,
        )
    except DBAPIError as exc:
        failure = _database_failure(exc)  # an outage is raised on
    digest_key = ledger_key(None, hashlib.sha256(raw).hexdigest())
    log.warning("quarantine of key=%s failed (%s): kept under %s", key, failure, digest_key)
    return quarantine(
        runtime, account, raw, origin, None, digest_key, f"{reason} ({failure})", retry_of=retry_of
    )


def _decide_and_act(
    runtime: Runtime,
    account: AccountConfig,
    message: IncomingMessage,
    origin: str,
    raw: bytes,
    seconds: float,
    compressed_original: bytes | bool | None = None,
    subject: ParsedSubject | None = None,
) -> ProcessResult:
    pack = runtime.pack_for(account)
    started = time.monotonic()
    authentication = _authenticate(runtime, account, message, raw, seconds)
    seconds = max(seconds - (time.monotonic() - started), 0.001)
    with transaction(runtime.engine) as session:
        read_key = message.key
        key = recordable_key(session, account.name, read_key, message.fingerprint)
        if key is None:
            return ProcessResult(account.name, origin, message.message_id, message.key, "duplicate")
        if key != message.key:  # another mail holds its Message-ID: this one gets a key of its own
            message = replace(message, key=key)
        with time_limit(seconds, limit=runtime.config.time_limit_seconds):
            decision = decide(
                session,
                runtime.config,
                account,
                pack,
                message,
                trace=True,
                authentication=authentication,
                subject=subject,
            )
            trace = decision_trace(decision, account.name, pack.name, message.subject)
            rule = decision.rule
            if rule is None:
                intent = decision.subject.intent.value
                raise NoRuleMatched(f"no rule of pack {pack.name!r} matched (intent {intent})", trace)
            sender, target = load_rows(session, decision.situation)
            ctx = ActionContext(
                session=session,
                config=runtime.config,
                account=account,
                pack=pack,
                message=message,
                subject=decision.subject,
                facts=decision.facts,
                sender=sender,
                target=target,
                target_entity=decision.situation.target_entity,
                authentication=decision.situation.authentication,
            )
            for step, runs in decision.steps:
                if runs:
                    step.action.run(ctx)
            result = ProcessResult(
                account=account.name,
                origin=origin,
                message_id=message.message_id,
                key=message.key,
                outcome=rule.outcome,
                rule=rule.name,
                entity=ctx.entity,
                number=ctx.number,
                replies=_addressed(ctx.replies),
                notifications=_addressed(ctx.notifications),
                reason=ctx.reason,
            )
            detail = {
                **ctx.ledger_detail,
                "problems": list(message.problems),
                "authentication": decision.situation.authentication.to_json(),
            }
            _record(session, result, message.fingerprint, _logged(message, trace), **detail)
            write_queued_messages(session)
            if runtime.config.keep_originals_days > 0 and compressed_original is not True:
                keep_original(
                    session,
                    account=account.name,
                    key=key,
                    message_id=message.message_id,
                    raw=raw,
                    now=ctx.now,
                    compressed=compressed_original if isinstance(compressed_original, bytes) else None,
                    parsed_key=read_key,
                    fingerprint=message.fingerprint,
                )
            session.flush()
    return result


def _authenticate(
    runtime: Runtime, account: AccountConfig, message: IncomingMessage, raw: bytes, seconds: float
) -> SenderAuthentication:
    """Whether the sender is who From says; run before the transaction, as a DKIM check waits on DNS."""
    if not account.authentication.verify_dkim:  # headers only: nothing to wait for
        return authenticate_sender(message, account.authentication, raw=raw)
    with time_limit(seconds, limit=runtime.config.time_limit_seconds):
        return authenticate_sender(message, account.authentication, raw=raw)


def _record(
    session: Session,
    result: ProcessResult,
    fingerprint: str | None,
    logged: dict[str, Any] | None,
    **detail: Any,
) -> None:
    """The mail's ledger entry, from its result; ``detail`` adds keys to the entry's JSON detail.

    ``logged``: the sender, subject and trace the communication log keeps (None: unreadable mail).
    """
    replies = [{"to": a.to, "subject": a.subject} for a in result.replies]  # asdict's, for less
    info = {"origin": result.origin, "replies": replies, **detail}
    if result.reason:
        info["reason"] = result.reason
    record_outcome(
        session,
        account=result.account,
        key=result.key,
        message_id=result.message_id,
        outcome=result.outcome,
        rule=result.rule,
        entity=result.entity,
        number=result.number,
        detail=info,
        fingerprint=fingerprint,
        **(logged or {}),
    )


def quarantine(
    runtime: Runtime,
    account: AccountConfig,
    raw: bytes,
    origin: str,
    message_id: str | None,
    key: str,
    reason: str,
    *,
    retry_of: int | None = None,
    fingerprint: str | None = None,
    logged: dict[str, Any] | None = None,
) -> ProcessResult:
    """Keep a message we cannot handle, whole, with its reason; recorded in the ledger as quarantined.

    ``logged``: the ledger's sender, subject and trace, when the message could be read.
    """
    reason = _storable(reason, MAX_REASON_CHARS)
    message_id = _storable(message_id, None) if message_id else message_id
    with transaction(runtime.engine) as session:
        own_key = recordable_key(session, account.name, key, fingerprint)
        if own_key is None:
            return ProcessResult(account.name, origin, message_id, key, "duplicate")
        key = own_key
        entry_id = hold(
            session, account=account.name, key=key, origin=origin, raw=raw, reason=reason, retry_of=retry_of
        )
        result = ProcessResult(
            account.name, origin, message_id, key, "quarantined", reason=reason, quarantine_id=entry_id
        )
        _record(session, result, fingerprint, logged, quarantine_id=entry_id)
    return result


MAX_REASON_CHARS = 2_000


def _storable(text: str, limit: int | None) -> str:
    """Text any database stores: no NUL or other control characters, no lone surrogates, bounded."""
    text = clean_line(fix_escaped_bytes(text))
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class RetryOutcome:
    """What a quarantine retry did."""

    entry_id: int
    result: ProcessResult | None = None
    error: str | None = None
    released: bool = field(default=False)


def retry_quarantined(runtime: Runtime, entry_id: int) -> RetryOutcome:
    """Replay a held message through its account's (possibly fixed) pack; release it if it now passes."""
    with transaction(runtime.engine) as session:
        held = take_for_retry(session, entry_id)
        if isinstance(held, str):
            return RetryOutcome(entry_id, error=held)
        account = runtime.config.account(held.account)
        forget(session, held.account, held.key)
    result = process_message(runtime, account, held.raw, held.origin, retry_of=entry_id)
    if result.outcome == "quarantined":
        return RetryOutcome(entry_id, result=result)
    with transaction(runtime.engine) as session:
        release(session, entry_id)
    return RetryOutcome(entry_id, result=result, released=True)
