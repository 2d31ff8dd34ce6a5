"""The communication log: the Messages page, one message's page (trace, replies, original), items."""

from __future__ import annotations

import json
from datetime import date
from email import message_from_bytes, policy
from typing import Any

from starlette.responses import Response

from engine.errors import MailgateError
from engine.rules.explain import read_trace
from engine.rules.pack import OUTCOMES
from engine.storage import views
from engine.storage.db import transaction
from engine.storage.message_log import LogSearch, has_original, log_entry, replies_of, search_log
from engine.storage.originals import original_of
from engine.web.console import Ask, Console, NotFound

EXTRA_OUTCOMES = ("quarantined", "duplicate")


def _search(ask: Ask) -> LogSearch:
    number, day, before = ask.query("number"), ask.query("date"), ask.query("before")
    try:
        return LogSearch(
            sender=ask.query("sender"),
            subject=ask.query("subject"),
            outcome=ask.query("outcome"),
            rule=ask.query("rule"),
            number=int(number) if number else None,
            day=date.fromisoformat(day) if day else None,
            account=ask.query("account"),
            before=int(before) if before else None,
        )
    except ValueError as exc:
        raise MailgateError(f"search: {exc} (number: digits; date: YYYY-MM-DD)") from None


def messages(console: Console, ask: Ask) -> Response:
    """Every processed message, newest first, searchable; older pages by keyset (``before``)."""
    search = _search(ask)
    with transaction(console.runtime.engine) as session:
        found = search_log(session, search)
    params = {k: v for k, v in ask.request.query_params.items() if k != "before" and v}
    rules = sorted({rule.name for pack in console.runtime.packs.values() for rule in pack.rules})
    return console.render(
        "messages.html",
        ask,
        rows=found.rows,
        search=search,
        params=params,
        older=found.older,
        outcomes=[*OUTCOMES, *EXTRA_OUTCOMES],
        rules=rules,
        accounts=[a.name for a in console.runtime.config.accounts],
    )


def message(console: Console, ask: Ask) -> Response:
    """One processed message: what was decided and why, the replies it queued, its item, its original."""
    entry_id = int(ask.request.path_params["entry_id"])
    with transaction(console.runtime.engine) as session:
        entry = log_entry(session, entry_id)
        if entry is None:
            raise NotFound(f"no message {entry_id} in the log")
        replies = replies_of(session, entry)
        kept = has_original(session, entry)
    return console.render(
        "message.html",
        ask,
        entry=entry,
        detail=_detail(entry.detail),
        trace=read_trace(entry.trace),
        replies=replies,
        kept=kept,
    )


def _detail(text: str) -> dict[str, Any]:
    """A ledger entry's JSON detail ({} if it is not a JSON object)."""
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _original(console: Console, entry_id: int) -> tuple[Any, bytes]:
    with transaction(console.runtime.engine) as session:
        entry = log_entry(session, entry_id)
        if entry is None:
            raise NotFound(f"no message {entry_id} in the log")
        original = original_of(session, entry.account, entry.message_key)
        if original is not None:
            return entry, original.raw
    raise NotFound(f"the original of message {entry_id} is not kept (processing.keep_originals_days)")


def original(console: Console, ask: Ask) -> Response:
    """The kept original, shown as text (headers and every text part; HTML as its source, never run)."""
    entry, raw = _original(console, int(ask.request.path_params["entry_id"]))
    return console.render("original.html", ask, entry=entry, parts=readable_parts(raw), size=len(raw))


def original_download(console: Console, ask: Ask) -> Response:
    """The kept original, byte for byte, as a file to save."""
    entry, raw = _original(console, int(ask.request.path_params["entry_id"]))
    return eml_download(raw, f"message-{entry.id}.eml")


def eml_download(raw: bytes, filename: str) -> Response:
    """Raw mail as an attachment the browser saves and never renders."""
    return Response(
        raw,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def readable_parts(raw: bytes) -> list[tuple[str, str]]:
    """(label, text) for the header block and each text part of a mail, for showing as plain text."""
    parsed = message_from_bytes(raw, policy=policy.compat32)
    end = raw.find(b"\n\n")
    head = raw[: end if end >= 0 else len(raw)].decode("utf-8", "replace")
    parts = [("headers", head)]
    for part in parsed.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("utf-8", "replace")
        parts.append((f"{part.get_content_type()} ({charset})", text))
    return parts


def item(console: Console, ask: Ask) -> Response:
    """A call, request or task as ``mailgate show`` prints it (read-only)."""
    kind, number = ask.request.path_params["kind"], int(ask.request.path_params["number"])
    view = {"call": views.call_view, "request": views.request_view, "task": views.task_view}.get(kind)
    if view is None:
        raise NotFound(f"no kind of item {kind!r}: call, request or task")
    with transaction(console.runtime.engine) as session:
        data = view(session, number)
    if data is None:
        raise NotFound(f"no {kind} {number}")
    return console.render("item.html", ask, kind=kind, number=number, data=data)


ROUTES = [
    ("/messages", ["GET"], messages, False),
    ("/messages/{entry_id:int}", ["GET"], message, False),
    ("/messages/{entry_id:int}/original", ["GET"], original, False),
    ("/messages/{entry_id:int}/original.eml", ["GET"], original_download, False),
    ("/items/{kind:str}/{number:int}", ["GET"], item, False),
]
