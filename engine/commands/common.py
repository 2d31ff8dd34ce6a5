"""What every ``mailgate`` command shares: errors as messages, the group classes, the global options."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click

from engine.config.model import Config, find_config_path, load_config
from engine.errors import ConfigError, MailgateError
from engine.runtime import Runtime


def echo_json(data: Any) -> None:
    """Print ``data`` as one line of JSON (a ``--json`` output's line)."""
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False, default=str))


@contextmanager
def user_errors() -> Iterator[None]:
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


class Command(click.Command):
    """A subcommand whose ``--help`` says that the global options may also be given after it."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Print the command's epilog, then the note on global options."""
        super().format_epilog(ctx, formatter)
        if ctx.parent is not None:
            formatter.write_paragraph()
            formatter.write_text(GLOBALS_EPILOG)


class Group(click.Group):
    """A command group: errors become messages, and its subcommands' help mentions the global options."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Print the group's epilog, then the note on global options."""
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(GLOBALS_EPILOG)


class RootGroup(Group):
    """The ``mailgate`` group: its own options may also come after the subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Move the global options written after the subcommand in front of it, then parse."""
        return super().parse_args(ctx, hoist_global_options(self, args))

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register a command; one made with plain click (a plugin's) gets the global-options note too."""
        _note_global_options(cmd)
        super().add_command(cmd, name)


def _note_global_options(command: click.Command) -> None:
    if isinstance(command, Command | Group):
        return  # they print the note themselves
    command.epilog = f"{command.epilog}\n\n{GLOBALS_EPILOG}" if command.epilog else GLOBALS_EPILOG
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _note_global_options(sub)


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


def config_of(ctx: click.Context) -> Config:
    """The config the command works with, read (and checked) once per command."""
    obj = ctx.find_root().obj
    if obj.get("loaded_config") is None:
        obj["loaded_config"] = load_config(find_config_path(obj.get("config")))
    config: Config = obj["loaded_config"]
    return config


def runtime_of(ctx: click.Context) -> Runtime:
    """The installation the command works on, loaded once per command (and closed after it)."""
    obj = ctx.find_root().obj
    if obj.get("runtime") is None:
        obj["runtime"] = Runtime(config_of(ctx))
        ctx.call_on_close(obj["runtime"].close)
    runtime: Runtime = obj["runtime"]
    return runtime


def database_url(ctx: click.Context) -> str:
    """The config's database URL, without opening the database (``db`` commands check it themselves)."""
    return config_of(ctx).database


def when(iso_time: str | None) -> str:
    """An ISO 8601 UTC timestamp as the lists print it: ``2026-12-05 16:30Z``."""
    return f"{iso_time[:10]} {iso_time[11:16]}Z" if iso_time else f"{'-':<17}"


def age_option(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """An ``--older-than`` value such as ``30d``, ``12h``, ``2w`` or ``90m`` as a duration."""
    from engine.storage.retention import parse_age

    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}", ctx, param) from None
