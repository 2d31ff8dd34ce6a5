"""``mailgate process``, ``deliver`` and ``explain``: mail through the pipeline (or not)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from engine.commands.common import (
    Command,
    echo_json,
    runtime_of,
)
from engine.config.model import find_config_path, load_config
from engine.errors import ConfigError, MailgateError
from engine.runtime import Runtime
from engine.storage.schema import SchemaVersionError


@click.command(cls=Command)
@click.option("--account", required=True, help="The account the mail arrived in.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message per line.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def process(ctx: click.Context, account: str, as_json: bool, paths: tuple[Path, ...]) -> None:
    """Process .eml files, maildir folders or mbox files as if they arrived in ACCOUNT."""
    from engine.mail.sources import iter_source_messages
    from engine.pipeline import process_message

    runtime = runtime_of(ctx)
    acc = runtime.config.account(account)
    for path in paths:
        if not path.exists():
            raise MailgateError(f"{path}: no such file or folder")
    for source in iter_source_messages(paths):
        result = process_message(runtime, acc, source.raw, source.origin)
        if as_json:
            echo_json(result.to_json())
        else:
            target = f" {result.entity} {result.number}" if result.entity else ""
            extra = f" ({result.reason})" if result.reason else ""
            click.echo(f"{source.origin}: {result.outcome}{target} [{result.rule or '-'}]{extra}")


EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and delivers it again later


@click.command(cls=Command)
@click.argument("account")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_context
def deliver(ctx: click.Context, account: str, as_json: bool) -> None:
    """Process one message piped in on standard input (an MTA's pipe delivery) as arriving in ACCOUNT.

    Exit status: 0 for every outcome, quarantined and duplicate included (the message is safe in the
    database; a database error the message itself causes quarantines it); 75 (EX_TEMPFAIL, so the
    MTA retries) only if the database cannot be reached or used for now (engine/storage/failures.py);
    1 for an unknown account, an empty input, a config mistake or a database whose schema version
    is not this mailgate's (retrying cannot fix that; 2 for a malformed command line, as always).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from engine.pipeline import process_message
    from engine.storage.db import DatabaseError

    config = load_config(find_config_path(ctx.find_root().obj.get("config")))
    acc = config.account(account)
    raw = sys.stdin.buffer.read()
    if not raw.strip():
        raise MailgateError("no message on standard input (usage: mailgate deliver ACCOUNT < message.eml)")
    try:
        runtime = Runtime(config)
        ctx.call_on_close(runtime.close)
        result = process_message(runtime, acc, raw, "stdin")
    except (DatabaseError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip()
        click.echo(f"mailgate: {reason}; message not delivered, the MTA will retry", err=True)
        sys.exit(EX_TEMPFAIL)
    except (ConfigError, SchemaVersionError):
        raise
    except Exception as exc:  # never bounce a mail for our own bug: let the MTA keep it
        if os.environ.get("MAILGATE_DEBUG"):
            raise
        click.echo(f"mailgate: internal error: {type(exc).__name__}: {exc}; the MTA will retry", err=True)
        sys.exit(EX_TEMPFAIL)
    if as_json:
        echo_json(result.to_json())
    else:
        target = f" {result.entity} {result.number}" if result.entity else ""
        extra = f" ({result.reason})" if result.reason else ""
        click.echo(f"{result.origin}: {result.outcome}{target} [{result.rule or '-'}]{extra}")


@click.command(cls=Command)
@click.option("--account", required=True, help="The account the mail would arrive in.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def explain(ctx: click.Context, account: str, as_json: bool, path: Path) -> None:
    """Show how a message would be decided, writing nothing."""
    from engine.rules.explain import explain_message

    runtime = runtime_of(ctx)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MailgateError(f"{path}: {exc.strerror or exc}") from None
    explanation = explain_message(runtime, runtime.config.account(account), raw)
    if as_json:
        echo_json(explanation.to_json())
    else:
        click.echo(explanation.to_text())


COMMANDS: tuple[click.Command, ...] = (
    process,
    deliver,
    explain,
)  # what engine/cli.py registers
