"""``mailgate run`` and ``status``: the service and how it is doing."""

from __future__ import annotations

import sys
from typing import Any

import click

from engine.commands.common import (
    Command,
    config_of,
    database_url,
    echo_json,
    runtime_of,
)
from engine.errors import ConfigError

# --- the service (issue 3): run, status ---------------------------------------------------------


@click.command("run", cls=Command)
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
    unset = config_of(ctx).unset_secrets(active_only=True)
    if unset:  # before anything starts: every account's and server's missing secret at once
        raise ConfigError(unset)
    if upgrade:
        from engine.storage.migrate import upgrade_database

        upgraded = upgrade_database(database_url(ctx))
        if upgraded.applied or upgraded.adopted or upgraded.before is None:
            for line in upgraded.lines():
                click.echo(line)
    runtime = runtime_of(ctx)
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


@click.command("status", cls=Command)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account per line.")
@click.pass_context
def account_status(ctx: click.Context, as_json: bool) -> None:
    """Show the service and each account: state, last poll, messages processed, last error.

    Exit status: 0 if the service runs and no active account is failing; 3 if the service is not
    running (stopped, never started, or no heartbeat lately); 4 if it runs but an account is failing.
    """
    from engine.storage.status import SERVICE_RUNNING, service_view, status_view

    runtime = runtime_of(ctx)
    service = service_view(runtime.engine)
    rows = status_view(runtime.engine, runtime.config.accounts)
    if as_json:
        for row in rows:
            echo_json({**row, "service": service["state"]})
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


COMMANDS: tuple[click.Command, ...] = (
    run_service,
    account_status,
)  # what engine/cli.py registers
