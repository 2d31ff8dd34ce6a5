"""``mailgate db upgrade|current|history|load``: the database and what is loaded into it."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import (
    Group,
    database_url,
    echo_json,
    runtime_of,
)
from engine.storage.schema import head_revision


@click.group(cls=Group)
def db() -> None:
    """Database commands."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database's schema to this mailgate's (back it up first: docs/upgrading.md)."""
    from engine.storage.migrate import upgrade_database

    for line in upgrade_database(database_url(ctx)).lines():
        click.echo(line)


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the database's schema version, and whether this mailgate can use it."""
    from engine.storage.migrate import describe_current

    click.echo(describe_current(database_url(ctx)))


@db.command("history")
def db_history() -> None:
    """List the schema versions this mailgate knows, newest first."""
    from engine.storage.migrate import history

    head = head_revision()
    for revision in history():
        mark = "  (head)" if revision.revision == head else ""
        click.echo(f"{revision.revision:<4} {revision.message}{mark}")


@db.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what was loaded as one JSON object.")
@click.pass_context
def db_load(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Load groups, people, calls, requests and tasks from a YAML file (docs/loading-data.md).

    An upsert: the whole file is checked first, every mistake reported as file:line:col, and
    nothing is written unless all is well.
    """
    from dataclasses import asdict

    from engine.storage.fixtures import load_fixtures

    counts = load_fixtures(runtime_of(ctx).engine, file)
    if as_json:
        echo_json({"file": str(file), **asdict(counts)})
    else:
        click.echo(f"loaded {file}: {counts.describe()}")


COMMANDS: tuple[click.Command, ...] = (db,)  # what engine/cli.py registers
