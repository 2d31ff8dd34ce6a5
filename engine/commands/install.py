"""``mailgate init``, ``demo`` and ``check``: making and checking an installation."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import Command
from engine.config.model import find_config_path


@click.command(cls=Command)
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a starter config, database, rule pack and mailbox folder in DIRECTORY."""
    from engine.commands.starter import create_starter

    config_path = create_starter(directory)
    click.echo(f"created {config_path}; next: mailgate --config {config_path} check")


@click.command(cls=Command)
@click.argument(
    "directory", required=False, default="demo-run", type=click.Path(file_okay=False, path_type=Path)
)
def demo(directory: Path) -> None:
    """Run the bundled demo: fixtures and a demo mailbox through the default pack (SQLite)."""
    from engine.commands.starter import run_demo

    run_demo(directory, click.echo)


@click.command(cls=Command)
@click.option(
    "--list", "list_vocabulary", is_flag=True, help="List the facts, actions and outcomes packs may use."
)
@click.option(
    "--database",
    "open_database",
    is_flag=True,
    help="Also open the database: check that it answers and that its schema version is this mailgate's.",
)
@click.pass_context
def check(ctx: click.Context, list_vocabulary: bool, open_database: bool) -> None:
    """Validate the config and every rule pack (bundled ones too); exit 1 on any mistake.

    The database is not touched unless --database is given.
    """
    from engine.config.checking import check_all, vocabulary

    if list_vocabulary:
        click.echo(vocabulary())
        return
    obj = ctx.find_root().obj
    for line in check_all(find_config_path(obj.get("config")), database=open_database):
        click.echo(line)


COMMANDS: tuple[click.Command, ...] = (
    init,
    demo,
    check,
)  # what engine/cli.py registers
