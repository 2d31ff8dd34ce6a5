"""``mailgate outbox [send|purge]`` and ``preview``: the outgoing messages and their templates."""

from __future__ import annotations

from datetime import timedelta

import click

from engine.commands.common import (
    Command,
    Group,
    age_option,
    echo_json,
    runtime_of,
    when,
)
from engine.config.model import find_config_path, load_config
from engine.config.reader import unset_secrets
from engine.errors import ConfigError, MailgateError
from engine.storage.db import transaction


@click.group(cls=Group, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message per line.")
@click.pass_context
def outbox(ctx: click.Context, as_json: bool) -> None:
    """List the outgoing messages (the message table); 'outbox send' sends the due ones."""
    from engine.storage.views import outbox_view

    if ctx.invoked_subcommand is not None:
        return
    with transaction(runtime_of(ctx).engine) as session:
        rows = outbox_view(session)
    if not rows and not as_json:
        click.echo("the outbox is empty")
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            click.echo(
                f"{row['id']:>5} {row['status']:<8} {when(row['created_at'])} {row['type']:<24} "
                f"{row['to']:<30} {row['subject']}"
            )


@outbox.command("purge")
@click.option(
    "--older-than",
    "age",
    metavar="AGE",
    default="90d",
    callback=age_option,
    show_default=True,
    help="Delete the messages sent longer ago than this (e.g. 30d, 12h, 2w).",
)
@click.pass_context
def outbox_purge(ctx: click.Context, age: timedelta) -> None:
    """Delete the sent messages older than AGE; queued, deferred and failed ones are always kept."""
    from engine.storage.models import utcnow
    from engine.storage.retention import purge_sent_outbox

    before = utcnow() - age
    count = purge_sent_outbox(runtime_of(ctx).engine, before)
    click.echo(
        f"purged {count} sent message{'' if count == 1 else 's'} sent before {before:%Y-%m-%d %H:%M} UTC"
    )


@outbox.command("send")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per attempted message per line.")
@click.pass_context
def outbox_send(ctx: click.Context, as_json: bool) -> None:
    """Send every due message once through its outgoing server; exit 1 if no server is configured."""
    from engine.outgoing.delivery import send_outbox_once

    runtime = runtime_of(ctx)
    unset = [p for server in runtime.config.outgoing.servers for p in unset_secrets(server.settings)]
    if unset:
        raise ConfigError(unset)
    report = send_outbox_once(runtime)
    for delivery in report.deliveries:
        if as_json:
            echo_json(delivery.to_json())
        else:
            click.echo(f"{delivery.id:>5} {delivery.status:<8} {delivery.to:<30} {delivery.detail}")
    if report.no_server:
        raise MailgateError(f"no outgoing server is configured (outgoing.servers); {report.summary()}")
    if not as_json:
        click.echo(report.summary())


@click.command(cls=Command)
@click.argument("message_type", metavar="TYPE")
@click.option("--account", help="Use this account's rule pack (default: the first account's).")
@click.option("--html", "as_html", is_flag=True, help="Print the HTML part instead of the text.")
@click.pass_context
def preview(ctx: click.Context, message_type: str, account: str | None, as_html: bool) -> None:
    """Render the template of a message TYPE (e.g. call_logged) with sample data."""
    from engine.outgoing.preview import preview_message

    config = load_config(find_config_path(ctx.find_root().obj.get("config")))
    rendered = preview_message(config, message_type, account)
    if as_html:
        click.echo(rendered.html, nl=False)
    else:
        click.echo(f"Subject: {rendered.subject}\n\n{rendered.text}", nl=False)


COMMANDS: tuple[click.Command, ...] = (
    outbox,
    preview,
)  # what engine/cli.py registers
