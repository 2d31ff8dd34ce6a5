"""Rule packs: each account's merged pack rule by rule (file:line), ``check`` results, and try-it.

Try-it decides a real mail (from the log, the quarantine, or an uploaded .eml) with a pack file as
it stands on disk now, beside what really happened, through ``explain`` (``engine.rules.explain``): the
decision's session is rolled back, so nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response

from engine.config.checking import check_all
from engine.errors import ConfigError, MailgateError
from engine.resources import bundled_pack_names, rules_dir
from engine.rules.explain import Explanation, explain_message, read_trace
from engine.rules.pack import load_pack
from engine.storage.db import transaction
from engine.storage.message_log import log_entry
from engine.storage.models import QuarantineEntry
from engine.storage.originals import original_of
from engine.web.console import Ask, Console, NotFound

MAX_UPLOAD_BYTES = 25 * 1024 * 1024


def pack_files(console: Console) -> list[Path]:
    """The pack files try-it may use: the installation's ``rules/*.yaml``, then the bundled packs."""
    local = sorted((console.runtime.config.base_dir / "rules").glob("*.yaml"))
    return [*(p.resolve() for p in local), *(rules_dir() / f"{n}.yaml" for n in bundled_pack_names())]


def packs(console: Console, ask: Ask) -> Response:
    """Each account's merged pack as it runs now, and what ``mailgate check`` says about every pack."""
    try:
        checked, problems = check_all(console.runtime.config.path), []
    except ConfigError as exc:
        checked, problems = [], [str(problem) for problem in exc.problems]
    return console.render(
        "packs.html",
        ask,
        accounts=[(a, console.runtime.pack_for(a)) for a in console.runtime.config.accounts],
        checked=checked,
        problems=problems,
    )


@dataclass(frozen=True)
class Happened:
    """What really happened to the mail tried: a log entry's outcome and trace, or a quarantine reason."""

    title: str
    outcome: str | None
    rule: str | None
    text: str


def _chosen_mail(console: Console, ask: Ask) -> tuple[bytes, str, Happened | None]:
    """(raw mail, account name, what happened to it) from the form's source."""
    source = ask.field("source")
    if source == "upload":
        upload = ask.form.get("eml") if ask.form is not None else None
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise MailgateError("choose an .eml file to upload")
        raw = upload.file.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES or not raw.strip():
            raise MailgateError("the uploaded file is empty or over 25 MB")
        return raw, ask.field("account"), None
    ident = ask.field("ident").strip().lstrip("#")
    if not ident.isdigit():
        raise MailgateError("give the number of a message from the log or of a quarantine entry")
    with transaction(console.runtime.engine) as session:
        if source == "quarantine":
            held = session.get(QuarantineEntry, int(ident))
            if held is None:
                raise NotFound(f"no quarantine entry {ident}")
            happened = Happened(f"quarantine entry {ident}", "quarantined", None, held.reason)
            return held.raw, held.account, happened
        entry = log_entry(session, int(ident))
        if entry is None:
            raise NotFound(f"no message {ident} in the log")
        original = original_of(session, entry.account, entry.message_key)
    if original is None:
        raise NotFound(f"the original of message {ident} is no longer kept: upload it as an .eml")
    trace = read_trace(entry.trace)
    text = trace["text"] if trace else f"outcome {entry.outcome} (no trace was kept)"
    return original.raw, entry.account, Happened(f"message {ident}", entry.outcome, entry.rule, text)


def try_pack(console: Console, ask: Ask) -> Response:
    """The try-it form (GET), or a mail decided with the chosen pack file beside what happened (POST)."""
    files = pack_files(console)
    values: dict[str, Any] = {
        "files": files,
        "accounts": [a.name for a in console.runtime.config.accounts],
        "source": ask.query("source") or "log",
        "ident": ask.query("ident"),
        "chosen_file": ask.query("pack"),
    }
    if ask.form is None:
        return console.render("try.html", ask, **values)
    values.update(source=ask.field("source"), ident=ask.field("ident"), chosen_file=ask.field("pack"))
    chosen = next((path for path in files if str(path) == ask.field("pack")), None)
    if chosen is None:
        raise MailgateError("choose one of the listed pack files")
    raw, account_name, happened = _chosen_mail(console, ask)
    account = console.runtime.config.account(account_name or console.runtime.config.accounts[0].name)
    try:
        pack = load_pack(str(chosen), console.runtime.config.base_dir)
    except ConfigError as exc:
        problems = [str(problem) for problem in exc.problems]
        return console.render("try.html", ask, 400, problems=problems, **values)
    tried: Explanation = explain_message(console.runtime, account, raw, pack)
    if happened is None:  # an uploaded mail: beside the account's own pack, as it runs now
        now = explain_message(console.runtime, account, raw)
        happened = Happened(f"pack {now.pack} (the account's)", now.outcome, now.rule, now.to_text())
    return console.render(
        "try.html", ask, tried=tried, happened=happened, account=account.name, pack_path=chosen, **values
    )


ROUTES = [
    ("/packs", ["GET"], packs, False),
    ("/packs/try", ["GET", "POST"], try_pack, False),
]
