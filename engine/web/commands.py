"""The console's commands: ``mailgate web`` (serve it) and ``mailgate admin`` (who may sign in).

Registered on the ``mailgate`` group by ``engine.cli``; nothing of the web stack is imported
until one of them runs.
"""

from __future__ import annotations

import sys

import click

from engine.config.model import find_config_path, load_config
from engine.errors import MailgateError
from engine.runtime import Runtime
from engine.storage.roles import ROLE_VIEWER, ROLES


def _runtime(ctx: click.Context) -> Runtime:
    runtime = Runtime(load_config(find_config_path(ctx.find_root().obj.get("config"))))
    ctx.call_on_close(runtime.close)
    return runtime


@click.command("web")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to serve the console (default: the config's service.web, else 127.0.0.1:8025).",
)
@click.pass_context
def web(ctx: click.Context, listen: str | None) -> None:
    """Serve the admin console (docs/console.md) until Ctrl-C or SIGTERM."""
    from engine.config.service import parse_listen_address
    from engine.web.server import serve_console

    runtime = _runtime(ctx)
    try:
        address = parse_listen_address(listen) if listen is not None else runtime.config.service.web
    except ValueError as exc:
        raise click.BadParameter(f"{listen!r}: {exc}", param_hint="--listen") from None
    address = address or parse_listen_address("127.0.0.1:8025")
    click.echo(f"mailgate console on http://{address}/ (Ctrl-C stops it)", err=True)
    serve_console(runtime, address)


@click.group("admin")
def admin() -> None:
    """Who may sign in to the admin console, and as what (viewer or admin)."""


@admin.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default=ROLE_VIEWER,
    show_default=True,
    help="viewer: sees everything; admin: also retries, drops and cancels.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.pass_context
def admin_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
    """Create an admin (or set their password and role); the password is asked for, never an argument."""
    from engine.storage.console import save_admin
    from engine.web.passwords import MIN_PASSWORD_CHARS, hash_password

    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() or not c.isprintable() for c in name):
        raise MailgateError(f"{name!r}: an admin's name is 1 to 100 characters, without spaces")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_CHARS:
        raise MailgateError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    created = save_admin(_runtime(ctx).engine, name, hash_password(password), role)
    click.echo(f"{'created' if created else 'updated'} {role} {name}")


@admin.command("list")
@click.pass_context
def admin_list(ctx: click.Context) -> None:
    """List the console's admins and their roles."""
    from engine.storage.console import list_admins

    rows = list_admins(_runtime(ctx).engine)
    if not rows:
        click.echo("no admins yet: mailgate admin add NAME")
    for row in rows:
        click.echo(f"{row.name:<24} {row.role:<7} created {row.created_at:%Y-%m-%d %H:%M}")
