"""The Accounts page (each account's state, last poll, today's outcomes, last error) and the audit."""

from __future__ import annotations

from datetime import UTC, datetime, time

from starlette.responses import RedirectResponse, Response

from engine.storage.console import audit_rows
from engine.storage.db import transaction
from engine.storage.message_log import outcomes_since
from engine.storage.status import service_view, status_view
from engine.web.console import Ask, Console

REFRESH_SECONDS = 15


def home(console: Console, ask: Ask) -> Response:
    """The console opens on the Accounts page."""
    return RedirectResponse("/accounts", status_code=303)


def accounts(console: Console, ask: Ask) -> Response:
    """Every account as ``mailgate status`` sees it, with its messages per outcome since midnight UTC."""
    engine = console.runtime.engine
    midnight = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    with transaction(engine) as session:
        today = outcomes_since(session, midnight)
    rows = status_view(engine, console.runtime.config.accounts)
    for row in rows:
        row["today"] = sorted(today.get(row["account"], {}).items())
    return console.render(
        "accounts.html",
        ask,
        service=service_view(engine),
        rows=rows,
        refresh=REFRESH_SECONDS,
        checked_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
    )


def audit(console: Console, ask: Ask) -> Response:
    """What admins did in the console, newest first."""
    return console.render("audit.html", ask, rows=audit_rows(console.runtime.engine))


ROUTES = [
    ("/", ["GET"], home, False),
    ("/accounts", ["GET"], accounts, False),
    ("/audit", ["GET"], audit, False),
]
