"""The ``mailgate`` command line (a contract: tools outside the project drive it)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from engine import __version__
from engine.config.model import find_config_path, load_config
from engine.config.reader import unset_secrets
from engine.errors import ConfigError, MailgateError
from engine.logformat import LOG_FORMATS, configure_logging
from engine.runtime import Runtime
from engine.stop_signal import release_stop_signal
from engine.storage.db import transaction
from engine.storage.schema import SchemaVersionError, head_revision

F = TypeVar("F", bound=Callable[..., Any])


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False, default=str))


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn every error into a clear message and an exit status, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except MailgateError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        # the reader went away (e.g. `mailgate outbox --json | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("MAILGATE_DEBUG"):
            raise
        click.echo(
            f"mailgate: internal error: {type(exc).__name__}: {exc} (set MAILGATE_DEBUG=1 for details)",
            err=True,
        )
        sys.exit(2)


GLOBALS_EPILOG = "The global options --config FILE, -v and --log-format may also follow the command."


class _Command(click.Command):
    """A subcommand whose ``--help`` says that the global options may also be given after it."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Print the command's epilog, then the note on global options."""
        super().format_epilog(ctx, formatter)
        if ctx.parent is not None:
            formatter.write_paragraph()
            formatter.write_text(GLOBALS_EPILOG)


class _Group(click.Group):
    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        with _user_errors():
            return super().invoke(ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Print the group's epilog, then the note on global options."""
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(GLOBALS_EPILOG)


class _RootGroup(_Group):
    """The ``mailgate`` group: its own options may also come after the subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Move the global options written after the subcommand in front of it, then parse."""
        return super().parse_args(ctx, hoist_global_options(self, args))


def _option_named(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and (name in param.opts or name in param.secondary_opts):
            return param
    return None


def _takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


def hoist_global_options(root: click.Group, args: list[str]) -> list[str]:
    """``args`` with the root's options that follow a subcommand moved in front of it.

    ``mailgate run -v --config X`` becomes ``mailgate -v --config X run``. An option of the same
    name that the subcommand has itself stays where it is (it is the subcommand's), as does
    everything after ``--``.
    """
    front: list[str] = []
    hoisted: list[str] = []
    rest: list[str] = []
    command: click.Command = root
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            rest.extend(args[index - 1 :])
            break
        target = front if command is root else rest
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            global_option = _option_named(root, name)
            if global_option is not None and not global_option.expose_value:
                global_option = None  # --version stays where it was written
            own = _option_named(command, name)
            option = own or (global_option if command is root else None)
            if option is None and global_option is not None:
                target, option = hoisted, global_option
            target.append(token)
            if option is not None and _takes_value(option) and "=" not in token and index < len(args):
                target.append(args[index])
                index += 1
            continue
        rest.append(token)  # the subcommand's name, or an argument
        if isinstance(command, click.Group) and token in command.commands:
            command = command.commands[token]
    return front + hoisted + rest


def _runtime(ctx: click.Context) -> Runtime:
    obj = ctx.find_root().obj
    if obj.get("runtime") is None:
        obj["runtime"] = Runtime(load_config(find_config_path(obj.get("config"))))
        ctx.call_on_close(obj["runtime"].close)
    runtime: Runtime = obj["runtime"]
    return runtime


@click.group(cls=_RootGroup, epilog="Run 'mailgate COMMAND --help' for a command's options.")
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


@main.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a starter config, database, rule pack and mailbox folder in DIRECTORY."""
    from engine.starter import create_starter

    config_path = create_starter(directory)
    click.echo(f"created {config_path}; next: mailgate --config {config_path} check")


@main.command()
@click.argument(
    "directory", required=False, default="demo-run", type=click.Path(file_okay=False, path_type=Path)
)
def demo(directory: Path) -> None:
    """Run the bundled demo: fixtures and a demo mailbox through the default pack (SQLite)."""
    from engine.starter import run_demo

    run_demo(directory, click.echo)


@main.group(cls=_Group)
def db() -> None:
    """Database commands."""


def _database_url(ctx: click.Context) -> str:
    return load_config(find_config_path(ctx.find_root().obj.get("config"))).database


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database's schema to this mailgate's (back it up first: docs/upgrading.md)."""
    from engine.storage.migrate import upgrade_database

    for line in upgrade_database(_database_url(ctx)).lines():
        click.echo(line)


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the database's schema version, and whether this mailgate can use it."""
    from engine.storage.migrate import describe_current

    click.echo(describe_current(_database_url(ctx)))


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

    counts = load_fixtures(_runtime(ctx).engine, file)
    if as_json:
        _echo_json({"file": str(file), **asdict(counts)})
    else:
        click.echo(f"loaded {file}: {counts.describe()}")


@main.command()
@click.option("--account", required=True, help="The account the mail arrived in.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message per line.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def process(ctx: click.Context, account: str, as_json: bool, paths: tuple[Path, ...]) -> None:
    """Process .eml files, maildir folders or mbox files as if they arrived in ACCOUNT."""
    from engine.mail.sources import iter_source_messages
    from engine.pipeline import process_message

    runtime = _runtime(ctx)
    acc = runtime.config.account(account)
    for path in paths:
        if not path.exists():
            raise MailgateError(f"{path}: no such file or folder")
    for source in iter_source_messages(paths):
        result = process_message(runtime, acc, source.raw, source.origin)
        if as_json:
            _echo_json(result.to_json())
        else:
            target = f" {result.entity} {result.number}" if result.entity else ""
            extra = f" ({result.reason})" if result.reason else ""
            click.echo(f"{source.origin}: {result.outcome}{target} [{result.rule or '-'}]{extra}")


EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and delivers it again later


@main.command()
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
        _echo_json(result.to_json())
    else:
        target = f" {result.entity} {result.number}" if result.entity else ""
        extra = f" ({result.reason})" if result.reason else ""
        click.echo(f"{result.origin}: {result.outcome}{target} [{result.rule or '-'}]{extra}")


@main.command()
@click.option("--account", required=True, help="The account the mail would arrive in.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def explain(ctx: click.Context, account: str, as_json: bool, path: Path) -> None:
    """Show how a message would be decided, writing nothing."""
    from engine.explain import explain_message

    runtime = _runtime(ctx)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MailgateError(f"{path}: {exc.strerror or exc}") from None
    explanation = explain_message(runtime, runtime.config.account(account), raw)
    if as_json:
        _echo_json(explanation.to_json())
    else:
        click.echo(explanation.to_text())


@main.command()
@click.argument("kind", type=click.Choice(["call", "request", "task"]))
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default form).")
@click.pass_context
def show(ctx: click.Context, kind: str, number: int, as_json: bool) -> None:
    """Show a call, request or task."""
    from engine.storage import views

    view = {"call": views.call_view, "request": views.request_view, "task": views.task_view}[kind]
    with transaction(_runtime(ctx).engine) as session:
        data = view(session, number)
    if data is None:
        raise MailgateError(f"no {kind} {number}")
    if as_json:
        _echo_json(data)
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@main.group(cls=_Group, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message per line.")
@click.pass_context
def outbox(ctx: click.Context, as_json: bool) -> None:
    """List the outgoing messages (the message table); 'outbox send' sends the due ones."""
    from engine.storage.views import outbox_view

    if ctx.invoked_subcommand is not None:
        return
    with transaction(_runtime(ctx).engine) as session:
        rows = outbox_view(session)
    if not rows and not as_json:
        click.echo("the outbox is empty")
    for row in rows:
        if as_json:
            _echo_json(row)
        else:
            click.echo(
                f"{row['id']:>5} {row['status']:<8} {_when(row['created_at'])} {row['type']:<24} "
                f"{row['to']:<30} {row['subject']}"
            )


def _when(iso_time: str | None) -> str:
    """An ISO 8601 UTC timestamp as the lists print it: ``2026-12-05 16:30Z``."""
    return f"{iso_time[:10]} {iso_time[11:16]}Z" if iso_time else f"{'-':<17}"


def _age_option(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """An ``--older-than`` value such as ``30d``, ``12h``, ``2w`` or ``90m`` as a duration."""
    from engine.storage.retention import parse_age

    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}", ctx, param) from None


@outbox.command("purge")
@click.option(
    "--older-than",
    "age",
    metavar="AGE",
    default="90d",
    callback=_age_option,
    show_default=True,
    help="Delete the messages sent longer ago than this (e.g. 30d, 12h, 2w).",
)
@click.pass_context
def outbox_purge(ctx: click.Context, age: timedelta) -> None:
    """Delete the sent messages older than AGE; queued, deferred and failed ones are always kept."""
    from engine.storage.models import utcnow
    from engine.storage.retention import purge_sent_outbox

    before = utcnow() - age
    count = purge_sent_outbox(_runtime(ctx).engine, before)
    click.echo(
        f"purged {count} sent message{'' if count == 1 else 's'} sent before {before:%Y-%m-%d %H:%M} UTC"
    )


@outbox.command("send")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per attempted message per line.")
@click.pass_context
def outbox_send(ctx: click.Context, as_json: bool) -> None:
    """Send every due message once through its outgoing server; exit 1 if no server is configured."""
    from engine.outgoing.delivery import send_outbox_once

    runtime = _runtime(ctx)
    unset = [p for server in runtime.config.outgoing.servers for p in unset_secrets(server.settings)]
    if unset:
        raise ConfigError(unset)
    report = send_outbox_once(runtime)
    for delivery in report.deliveries:
        if as_json:
            _echo_json(delivery.to_json())
        else:
            click.echo(f"{delivery.id:>5} {delivery.status:<8} {delivery.to:<30} {delivery.detail}")
    if report.no_server:
        raise MailgateError(f"no outgoing server is configured (outgoing.servers); {report.summary()}")
    if not as_json:
        click.echo(report.summary())


@main.command()
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


@main.command()
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
    from engine.checking import check_all, vocabulary

    if list_vocabulary:
        click.echo(vocabulary())
        return
    obj = ctx.find_root().obj
    for line in check_all(find_config_path(obj.get("config")), database=open_database):
        click.echo(line)


@main.group(cls=_Group)
def quarantine() -> None:
    """Messages that could not be handled, kept with their reason."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, as_json: bool) -> None:
    """List quarantined messages."""
    from engine.storage.views import quarantine_view

    with transaction(_runtime(ctx).engine) as session:
        rows = quarantine_view(session)
    if not rows and not as_json:
        click.echo("the quarantine is empty")
    for row in rows:
        if as_json:
            _echo_json(row)
        else:
            click.echo(
                f"{row['id']:>5} {row['status']:<8} {_when(row['received_at'])} {row['account']:<16} "
                f"{row['message_key'][:40]:<40} {row['reason']}"
            )


@quarantine.command("drop")
@click.argument("entry_id", type=int)
@click.pass_context
def quarantine_drop(ctx: click.Context, entry_id: int) -> None:
    """Delete one quarantined message for good (see 'quarantine show ID --raw' first)."""
    from engine.storage.retention import drop_quarantined

    dropped = drop_quarantined(_runtime(ctx).engine, entry_id)
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
    callback=_age_option,
    help="Delete the entries received longer ago than this (e.g. 30d, 12h, 2w).",
)
@click.pass_context
def quarantine_purge(ctx: click.Context, age: timedelta) -> None:
    """Delete every quarantined message (held or released) received longer ago than AGE."""
    from engine.storage.models import utcnow
    from engine.storage.retention import purge_quarantine

    before = utcnow() - age
    count = purge_quarantine(_runtime(ctx).engine, before)
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

    with transaction(_runtime(ctx).engine) as session:
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

    outcome = retry_quarantined(_runtime(ctx), entry_id)
    if outcome.error:
        raise MailgateError(outcome.error)
    assert outcome.result is not None
    if as_json:
        _echo_json({"released": outcome.released, **outcome.result.to_json()})
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


@main.group(cls=_Group)
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
    with transaction(_runtime(ctx).engine) as session:
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


@main.group(cls=_Group)
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

    rotation = rotate_token_secret(_runtime(ctx).engine, timedelta(days=grace_days))
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

    for row in token_secret_rows(_runtime(ctx).engine):
        if as_json:
            _echo_json(row)
        else:
            until = f"{row['verify_until']:%Y-%m-%d %H:%M}" if row["verify_until"] else "-"
            click.echo(
                f"{row['id']:>4} {row['state']:<9} created {row['created_at']:%Y-%m-%d %H:%M} until {until}"
            )


# --- the service (issue 3): run, status ---------------------------------------------------------


@main.command("run")
@click.option(
    "--once", is_flag=True, help="One pass over every active account, then exit (status 1 if any failed)."
)
@click.option(
    "--upgrade", is_flag=True, help="First upgrade the database's schema if it is older (as 'db upgrade')."
)
@click.option(
    "--http",
    "http_address",
    metavar="HOST:PORT",
    help="Serve /metrics and /healthz there (default: the config's service.http; none if unset).",
)
@click.option(
    "--web",
    "web_address",
    metavar="HOST:PORT",
    help="Serve the admin console there (default: the config's service.web; none if unset).",
)
@click.pass_context
def run_service(
    ctx: click.Context, once: bool, upgrade: bool, http_address: str | None, web_address: str | None
) -> None:
    """Watch every active account and process its mail as it arrives, until SIGTERM or Ctrl-C."""
    from engine.config.service import parse_listen_address
    from engine.service import serve
    from engine.web.server import console_beside

    try:
        http = parse_listen_address(http_address) if http_address is not None else None
    except ValueError as exc:
        raise click.BadParameter(f"{http_address!r}: {exc}", param_hint="--http") from None
    try:
        web = parse_listen_address(web_address) if web_address is not None else None
    except ValueError as exc:
        raise click.BadParameter(f"{web_address!r}: {exc}", param_hint="--web") from None
    unset = load_config(find_config_path(ctx.find_root().obj.get("config"))).unset_secrets(active_only=True)
    if unset:  # before anything starts: every account's and server's missing secret at once
        raise ConfigError(unset)
    if upgrade:
        from engine.storage.migrate import upgrade_database

        upgraded = upgrade_database(_database_url(ctx))
        if upgraded.applied or upgraded.adopted or upgraded.before is None:
            for line in upgraded.lines():
                click.echo(line)
    runtime = _runtime(ctx)
    with console_beside(runtime.config, web, enabled=not once):
        reports = serve(runtime, once=once, http=http)
    for report in reports:
        counts = ", ".join(f"{count} {outcome}" for outcome, count in report.outcomes)
        handled = f"{report.processed} processed" + (f" ({counts})" if counts else "")
        if report.state == "held_elsewhere":
            click.echo(f"{report.account}: skipped: a running service works it (see mailgate status)")
        elif report.error is None:
            click.echo(f"{report.account}: {handled}")
        else:
            click.echo(f"{report.account}: FAILED ({report.state}) after {handled}: {report.error}")
    if any(report.error is not None for report in reports):
        sys.exit(1)


# `mailgate status` exit statuses beside 0 (all well), 1 (a config mistake) and 2 (an internal error)
EXIT_SERVICE_NOT_RUNNING = 3
EXIT_ACCOUNT_FAILING = 4


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account per line.")
@click.pass_context
def account_status(ctx: click.Context, as_json: bool) -> None:
    """Show the service and each account: state, last poll, messages processed, last error.

    Exit status: 0 if the service runs and no active account is failing; 3 if the service is not
    running (stopped, never started, or no heartbeat lately); 4 if it runs but an account is failing.
    """
    from engine.storage.status import SERVICE_RUNNING, service_view, status_view

    runtime = _runtime(ctx)
    service = service_view(runtime.engine)
    rows = status_view(runtime.engine, runtime.config.accounts)
    if as_json:
        for row in rows:
            _echo_json({**row, "service": service["state"]})
    else:
        click.echo(_describe_service(service))
        width = max([len("ACCOUNT"), *(len(row["account"]) for row in rows)])
        held = [_held_by(row) for row in rows]
        held_width = max([len("HELD BY"), *(len(text) for text in held)])
        click.echo(
            f"{'ACCOUNT':<{width}}  {'STATE':<12}  {'LAST POLL':<20}  {'PROCESSED':>9}  "
            f"{'HELD BY':<{held_width}}  LAST ERROR"
        )
        for row, held_by in zip(rows, held, strict=True):
            error = "-"
            if row["last_error"]:
                error = f"{row['last_error_at']} {row['last_error']}"
                if row["retry_at"] and row["state"] != "ok":
                    error += f" (next try {row['retry_at']})"
            click.echo(
                f"{row['account']:<{width}}  {row['state']:<12}  {row['last_poll'] or 'never':<20}  "
                f"{row['processed']:>9}  {held_by:<{held_width}}  {error}"
            )
    if service["state"] != SERVICE_RUNNING:
        sys.exit(EXIT_SERVICE_NOT_RUNNING)
    if any(row["failing"] for row in rows):
        sys.exit(EXIT_ACCOUNT_FAILING)


def _held_by(row: dict[str, Any]) -> str:
    """Which process works an account: ``host (pid N) since TIME``, or ``-``."""
    if row["holder_host"] is None:
        return "-"
    return f"{row['holder_host']} (pid {row['holder_pid']}) since {row['held_since']}"


def _describe_service(service: dict[str, Any]) -> str:
    """The first line of ``mailgate status``: is the service running, where, since when."""
    from engine.storage.status import SERVICE_RUNNING, SERVICE_STALE, SERVICE_STOPPED

    where = f" on {service['host']} (pid {service['pid']})" if service["host"] else ""
    state, beat = service["state"], service["heartbeat"]
    if state == SERVICE_RUNNING:
        return f"SERVICE: running{where} since {service['started_at']}, last heartbeat {beat}"
    if state == SERVICE_STOPPED:
        return f"SERVICE: stopped{where} at {beat}"
    if state == SERVICE_STALE:
        return f"SERVICE: not running: no heartbeat since {beat}{where} (killed, crashed or hung)"
    return "SERVICE: never started on this database"


from engine.web.commands import admin, web  # noqa: E402  (the admin console: engine/web/)

main.add_command(web)
main.add_command(admin)

if __name__ == "__main__":  # pragma: no cover
    main()
