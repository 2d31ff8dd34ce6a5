"""The ``mailgate`` group itself: its global options and the version."""

from __future__ import annotations

import click

from engine import __version__
from engine.commands.common import RootGroup
from engine.logformat import LOG_FORMATS, configure_logging
from engine.stop_signal import release_stop_signal
from engine.storage.schema import head_revision


@click.group(cls=RootGroup, epilog="Run 'mailgate COMMAND --help' for a command's options.")
@click.version_option(
    __version__, prog_name="mailgate", message=f"%(prog)s %(version)s (database schema {head_revision()})"
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Config file (default: $MAILGATE_CONFIG or ./mailgate.yaml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="The log's lines: text, or one JSON object per line (same keys).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool, log_format: str) -> None:
    """mailgate: turns email into service-desk work."""
    ctx.obj = {"config": config_path, "runtime": None}
    configure_logging(verbose=verbose, log_format=log_format)
    if ctx.invoked_subcommand != "run":  # `run` stops cleanly on a SIGTERM held during start-up
        release_stop_signal()
