"""``mailgate show``: one call, request or task."""

from __future__ import annotations

import json

import click

from engine.commands.common import (
    Command,
    echo_json,
    runtime_of,
)
from engine.errors import MailgateError
from engine.storage.db import transaction


@click.command(cls=Command)
@click.argument("kind", type=click.Choice(["call", "request", "task"]))
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default form).")
@click.pass_context
def show(ctx: click.Context, kind: str, number: int, as_json: bool) -> None:
    """Show a call, request or task."""
    from engine.storage import views

    view = {"call": views.call_view, "request": views.request_view, "task": views.task_view}[kind]
    with transaction(runtime_of(ctx).engine) as session:
        data = view(session, number)
    if data is None:
        raise MailgateError(f"no {kind} {number}")
    if as_json:
        echo_json(data)
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


COMMANDS: tuple[click.Command, ...] = (show,)  # what engine/cli.py registers
