"""How a database outage shows in the log, with real processes: one WARNING line, no traceback.

A read-only SQLite file (made immutable with ``chattr +i`` as root, or mode 0444 otherwise) and a
PostgreSQL server that resets every connection (a ``TcpProxy`` in ``refuse`` mode) are outages:
the account's pass fails with ``event=poll_failed`` at WARNING naming what is wrong, the service
retries with back-off, and nothing is lost once the database is back. A SIGTERM during start-up
stops ``mailgate run`` with status 0, as any other SIGTERM does.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2e_desk import Mailbox, MakeDesk, account_yaml, alive, connector_yaml, events, mail, running, wait_for
from servers.tcp_proxy import TcpProxy


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file cannot be written, not even by root, within the block."""
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)
    try:
        yield
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o644)


def _warnings_and_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]


def test_a_read_only_sqlite_file_is_reported_as_read_only_at_warning_without_traceback(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol)))
    mailbox.append(mail("Printer 1 broken", message_id="r1@ex"), mail("Printer 2 broken", message_id="r2@ex"))
    desk.runtime.close()

    with read_only(desk.root / "mailgate.sqlite"):
        failed = desk.mailgate("-v", "run", "--once")

    assert failed.returncode == 1
    error = "database unavailable: SQLITE_READONLY: attempt to write a readonly database"
    assert failed.stdout.splitlines() == [f"helpdesk: FAILED (retrying) after 0 processed: {error}"]
    assert "Traceback" not in failed.stderr and " ERROR " not in failed.stderr, failed.stderr
    [line] = [line for line in _warnings_and_errors(failed.stderr) if "event=poll_failed" in line]
    assert " WARNING mailgate.service " in line
    assert [e["error"] for e in events(failed.stderr, "poll_failed")] == [error]
    assert "savepoint" not in failed.stderr
    assert mailbox.count() == 2  # nothing acknowledged

    again = desk.mailgate("run", "--once")  # writable again: everything is done, once
    assert again.stdout.splitlines() == ["helpdesk: 2 processed (2 logged)"], again.stderr
    assert mailbox.count() == 0


def test_a_postgresql_outage_in_the_service_is_one_warning_without_traceback_and_loses_nothing(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap"), poll=1), database=url)
    log = tmp_path / "run.log"

    with running(desk, log) as service:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        proxy.refuse()
        mailbox.append(mail("Printer 1 broken", message_id="pg1@ex"))
        wait_for(lambda: len(events(log.read_text(), "poll_failed")) >= 2, "two failed passes")
        alive(service, log)
        proxy.pass_traffic()
        wait_for(lambda: len(events(log.read_text(), "recovered")) == 1, "the recovery")
        wait_for(lambda: mailbox.count() == 0, "the mail acknowledged")

    text = log.read_text()
    assert service.returncode == 0, text
    assert "Traceback" not in text and " ERROR " not in text, text
    failures = events(text, "poll_failed")
    assert all(f["error"].startswith("database unavailable: ") for f in failures), failures
    assert [float(f["retry_in"]) > 0 for f in failures] == [True] * len(failures)  # backing off
    warned = [line for line in text.splitlines() if "event=poll_failed" in line and " WARNING " in line]
    assert len(warned) == len(failures)
    desk.runtime.engine.dispose()  # its pooled connections were reset by the proxy
    assert [(e["message_id"], e["outcome"]) for e in desk.ledger()] == [("pg1@ex", "logged")]


def test_a_sigterm_during_start_up_stops_mailgate_run_with_status_0(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")))
    log = desk.root / "run.log"
    process = desk.start(log=log)

    # as soon as mailgate's own code handles SIGTERM (SigCgt in /proc), it is in its start-up
    wait_for(lambda: process.poll() is not None or _catches_sigterm(process.pid), "the SIGTERM handler")
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=60) == 0, log.read_text()
    order = [e["event"] for e in events(log.read_text()) if e["event"] in ("stopping", "service_started")]
    assert order[0] == "stopping", order  # the signal came before the service started watching
    assert events(log.read_text(), "service_stopped")
    assert "Traceback" not in log.read_text()


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False
