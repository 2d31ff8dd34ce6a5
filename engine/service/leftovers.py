"""Finishing acknowledgements a lost connection left half done (IMAP: ``\\Deleted``, never expunged).

When the connection dies after ``UID STORE \\Deleted`` and before ``UID EXPUNGE`` reaches the
server, the messages stay in the folder, hidden from ``list_waiting`` (it lists undeleted mail),
and no later EXPUNGE of ours names them. So each pass first asks the connector for such messages
(``list_half_acknowledged``), fetches them, and has ``finish_acknowledging`` remove only those
whose ledger entry is committed: they were ours, and done. A message someone else flagged
``\\Deleted`` that the ledger does not know is left alone (neither processed nor expunged: its
owner's client expunges it); its id is remembered, so that it is not fetched again every pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from typing import Protocol, TypeVar

from connectors.base import Connector, MessageRef
from engine.errors import MailError
from engine.mail.header_bounds import ledger_key
from engine.mail.message import IncomingMessage
from engine.pipeline import fallback_key, read_message
from engine.runtime import Runtime
from engine.storage.db import transaction
from engine.storage.ledger import recordable_key
from engine.timelimit import ProcessingTimeout, time_limit

T = TypeVar("T")


class Guard(Protocol):
    """Awaits a connector call, bounded by ``timeout`` and given up on a stop request."""

    def __call__(self, awaitable: Awaitable[T], timeout: float) -> Awaitable[T]: ...


FETCHED_TOGETHER = 50  # half-acknowledged messages fetched with one command


def in_ledger(runtime: Runtime, account: str, raw: bytes) -> bool:
    """Whether the account's ledger holds this mail, as the pipeline would find it a duplicate."""
    message: IncomingMessage | MailError | None
    try:
        with time_limit(runtime.config.time_limit_seconds):
            message = read_message(raw, runtime.our_addresses)
    except ProcessingTimeout:
        message = None
    key, fingerprint = fallback_key(raw)[1], None
    if isinstance(message, IncomingMessage):
        key, fingerprint = message.key, message.fingerprint
    digest_key = ledger_key(None, hashlib.sha256(raw).hexdigest())  # where a failed quarantine keeps it
    with transaction(runtime.engine) as session:
        if recordable_key(session, account, key, fingerprint) is None:
            return True
        return recordable_key(session, account, digest_key, None) is None


class HalfAcknowledged:
    """One account's half-acknowledged messages, finished pass after pass (see the module)."""

    def __init__(self, runtime: Runtime, account: str, connector: Connector) -> None:
        self.runtime = runtime
        self.account = account
        self.connector = connector
        self.not_ours: set[str] = set()  # ids found flagged by someone else: not fetched again

    async def finish(self, guarded: Guard, timeout: float) -> int:
        """Remove the messages left ``\\Deleted`` that the ledger holds; how many were removed.

        ``guarded`` bounds each connector call by ``timeout`` and gives up on a stop request.
        """
        listed = await guarded(self.connector.list_half_acknowledged(), timeout)
        refs = [ref for ref in listed if ref.id not in self.not_ours]
        ours: list[MessageRef] = []
        start = 0
        while start < len(refs):
            wanted: Sequence[MessageRef] = refs[start : start + FETCHED_TOGETHER]
            raws = await guarded(self.connector.fetch_many(wanted), timeout)
            if not raws:  # a connector that breaks fetch_many's contract: leave the rest for later
                break
            for ref, raw in zip(wanted, raws, strict=False):
                if in_ledger(self.runtime, self.account, raw):
                    ours.append(ref)
                else:
                    self.not_ours.add(ref.id)
            start += len(raws)
        if ours:
            await guarded(self.connector.finish_acknowledging(ours), timeout)
        return len(ours)
