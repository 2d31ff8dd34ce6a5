"""``mailgate quarantine list|show|retry|drop|purge``: mail that could not be handled."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from engine.commands.common import (
    Group,
    age_option,
    echo_json,
    runtime_of,
    when,
)
from engine.errors import MailgateError
from engine.storage.db import transaction


@click.group(cls=Group)
def quarantine() -> None:
    """Messages that could not be handled, kept with their reason."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, as_json: bool) -> None:
    """List quarantined messages."""
    from engine.storage.views import quarantine_view

    with transaction(runtime_of(ctx).engine) as session:
        rows = quarantine_view(session)
    if not rows and not as_json:
        click.echo("the quarantine is empty")
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            click.echo(
                f"{row['id']:>5} {row['status']:<8} {when(row['received_at'])} {row['account']:<16} "
                f"{row['message_key'][:40]:<40} {row['reason']}"
            )


@quarantine.command("drop")
@click.argument("entry_id", type=int)
@click.pass_context
def quarantine_drop(ctx: click.Context, entry_id: int) -> None:
    """Delete one quarantined message for good (see 'quarantine show ID --raw' first)."""
    from engine.storage.retention import drop_quarantined

    dropped = drop_quarantined(runtime_of(ctx).engine, entry_id)
    if dropped is None:
        raise MailgateError(f"no quarantine entry {entry_id}")
    click.echo(
        f"dropped quarantine entry {dropped.id} ({dropped.status}, {dropped.account}, {dropped.message_key})"
    )


@quarantine.command("purge")
@click.option(
    "--older-than",
    "age",
    metavar="AGE",
    required=True,
    callback=age_option,
    help="Delete the entries received longer ago than this (e.g. 30d, 12h, 2w).",
)
@click.pass_context
def quarantine_purge(ctx: click.Context, age: timedelta) -> None:
    """Delete every quarantined message (held or released) received longer ago than AGE."""
    from engine.storage.models import utcnow
    from engine.storage.retention import purge_quarantine

    before = utcnow() - age
    count = purge_quarantine(runtime_of(ctx).engine, before)
    entries = "entry" if count == 1 else "entries"
    click.echo(f"purged {count} quarantine {entries} received before {before:%Y-%m-%d %H:%M} UTC")


@quarantine.command("show")
@click.argument("entry_id", type=int)
@click.option("--raw", is_flag=True, help="Print the whole message as received.")
@click.pass_context
def quarantine_show(ctx: click.Context, entry_id: int, raw: bool) -> None:
    """Show one quarantined message and its reason."""
    from engine.storage.models import QuarantineEntry
    from engine.storage.views import quarantine_view

    with transaction(runtime_of(ctx).engine) as session:
        entry = session.get(QuarantineEntry, entry_id)
        if entry is None:
            raise MailgateError(f"no quarantine entry {entry_id}")
        if raw:
            sys.stdout.buffer.write(entry.raw)
            return
        row = next(r for r in quarantine_view(session) if r["id"] == entry_id)
    click.echo(json.dumps(row, indent=2, ensure_ascii=False, default=str))


@quarantine.command("retry")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_retry(ctx: click.Context, entry_id: int, as_json: bool) -> None:
    """Replay a quarantined message through its account's current rule pack."""
    from engine.pipeline import retry_quarantined

    outcome = retry_quarantined(runtime_of(ctx), entry_id)
    if outcome.error:
        raise MailgateError(outcome.error)
    assert outcome.result is not None
    if as_json:
        echo_json({"released": outcome.released, **outcome.result.to_json()})
    elif outcome.released:
        click.echo(
            " ".join(
                str(part)
                for part in (
                    "released:",
                    outcome.result.outcome,
                    outcome.result.entity,
                    outcome.result.number,
                )
                if part is not None
            )
        )
    else:
        click.echo(f"still quarantined: {outcome.result.reason}")
        sys.exit(1)


COMMANDS: tuple[click.Command, ...] = (quarantine,)  # what engine/cli.py registers
