"""``mailgate secret list|rotate``: the secrets that sign our reply tokens."""

from __future__ import annotations

from datetime import timedelta

import click

from engine.commands.common import (
    Group,
    echo_json,
    runtime_of,
)


@click.group(cls=Group)
def secret() -> None:
    """The secret that signs the reply tokens in our Message-IDs (kept in the database)."""


@secret.command("rotate")
@click.option(
    "--grace-days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Days the replaced secret still verifies replies to mail sent before (0: refuse them now).",
)
@click.pass_context
def secret_rotate(ctx: click.Context, grace_days: int) -> None:
    """Sign with a new secret from now on; the old one verifies for the grace period, then is refused."""

    from engine.storage.token_keys import rotate_token_secret

    rotation = rotate_token_secret(runtime_of(ctx).engine, timedelta(days=grace_days))
    retired = ", ".join(str(i) for i in rotation.retired_ids) or "none"
    click.echo(
        f"secret {rotation.new_id} now signs; retired secret(s) {retired} verify until "
        f"{rotation.verify_until:%Y-%m-%d %H:%M} UTC"
    )


@secret.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per secret per line.")
@click.pass_context
def secret_list(ctx: click.Context, as_json: bool) -> None:
    """List the secrets by id, state and dates (never the secrets themselves)."""
    from engine.storage.token_keys import token_secret_rows

    for row in token_secret_rows(runtime_of(ctx).engine):
        if as_json:
            echo_json(row)
        else:
            until = f"{row['verify_until']:%Y-%m-%d %H:%M}" if row["verify_until"] else "-"
            click.echo(
                f"{row['id']:>4} {row['state']:<9} created {row['created_at']:%Y-%m-%d %H:%M} until {until}"
            )


COMMANDS: tuple[click.Command, ...] = (secret,)  # what engine/cli.py registers
