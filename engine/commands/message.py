"""``mailgate message show``: a processed mail and its kept original."""

from __future__ import annotations

import json
import sys

import click

from engine.commands.common import (
    Group,
    runtime_of,
)
from engine.errors import MailgateError
from engine.storage.db import transaction


@click.group(cls=Group)
def message() -> None:
    """Processed mail as it arrived (kept for processing.keep_originals_days)."""


@message.command("show")
@click.argument("message_id")
@click.option("--raw", is_flag=True, help="Print the stored original, byte for byte.")
@click.pass_context
def message_show(ctx: click.Context, message_id: str, raw: bool) -> None:
    """Show what a mail did and where its original is; MESSAGE_ID is its Message-ID or ledger key."""
    from engine.storage.originals import find_originals
    from engine.storage.views import message_view

    missing = (
        f"no kept original for {message_id!r}: it was not processed here, or it is older than "
        "processing.keep_originals_days"
    )
    with transaction(runtime_of(ctx).engine) as session:
        originals = find_originals(session, message_id)
        if raw:
            if not originals:
                raise MailgateError(missing)
            for original in originals:
                sys.stdout.buffer.write(original.raw)
            return
        views = message_view(session, message_id, originals)
    if not views:
        raise MailgateError(missing)
    for view in views:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False, default=str))


COMMANDS: tuple[click.Command, ...] = (message,)  # what engine/cli.py registers
