"""A service desk for the end-to-end tests: real config files that read the session's Dovecot.

``build_desk(root, accounts)`` writes ``mailgate.yaml`` (accounts given as YAML text, see
``account_yaml`` and ``connector_yaml``), copies the harness CA beside it as ``ca.pem`` (the
accounts name it as ``ca_file: ca.pem``, relative to the config's folder, so certificates are
verified for real), loads ``STAFF`` and opens a ``Runtime`` on the SQLite file. The service then
runs in-process (``Desk.run_once``: ``engine.service.serve(runtime, once=True)``, what
``mailgate run --once`` calls) or as the installed ``mailgate`` console script (``Desk.mailgate``,
``Desk.start``). What it did is read back through the views the CLI prints.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from servers.dovecot import Dovecot
from sqlmodel import Session, col, select

from engine.config.model import load_config
from engine.runtime import Runtime
from engine.service import PassReport, serve
from engine.service.runner import TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV
from engine.storage.fixtures import load_fixtures
from engine.storage.models import Call
from engine.storage.status import status_view
from engine.storage.views import call_view, ledger_view, outbox_view, quarantine_view, request_view, task_view

PROTOCOLS = ("imap", "pop3")
MAILGATE = Path(sys.executable).parent / "mailgate"
WAIT_LIMIT = 30.0  # every wait: poll until done, give up after this many seconds
DESK_ADDRESS = "helpdesk@example.com"

# the people and items every desk starts with
STAFF = """\
groups:
  - name: Service Desk
people:
  - {email: ada@example.com, name: Ada User, user: true}
  - {email: bob@example.com, name: Bob User, user: true}
  - {email: grace@example.com, name: Grace Analyst, user: false, analyst: true, groups: [Service Desk]}
  - {email: fran@example.com, name: Fran Approver, user: false, analyst: true}
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     summary: Printer jams}
  - {number: 11, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     summary: VPN drops}
requests:
  - {number: 40, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Laptop}
tasks:
  - {number: 400, kind: approval, status: open, request: 40, sequence: 1, approver: fran@example.com}
  - {number: 401, kind: task, status: pending, request: 40, sequence: 2, assigned_analyst: grace@example.com}
"""


@dataclass(frozen=True)
class Mailbox:
    """One Dovecot user's mailbox (a fresh ``mailbox_user`` per test)."""

    dovecot: Dovecot
    user: str
    password: str

    def append(self, *messages: bytes) -> None:
        """Deliver messages into the INBOX (IMAP APPEND as the user), in this order."""
        for raw in messages:
            self.dovecot.append(self.user, raw)

    def count(self, folder: str = "INBOX") -> int:
        """How many messages a folder holds."""
        return self.dovecot.count(self.user, folder)


def connector_yaml(
    mailbox: Mailbox,
    protocol: str,
    *,
    password: str | None = None,
    port: int | None = None,
    **extra: object,
) -> str:
    """A ``connector:`` flow mapping reading ``mailbox`` over implicit TLS, verified with ``ca.pem``."""
    dovecot = mailbox.dovecot
    tls_port = {"imap": dovecot.imaps_port, "pop3": dovecot.pop3s_port}[protocol]
    settings: dict[str, object] = {
        "type": protocol,
        "host": dovecot.host,  # 127.0.0.1, which the harness certificate names
        "port": port or tls_port,
        "security": "tls",
        "username": mailbox.user,
        "password": f"'{password if password is not None else mailbox.password}'",
        "ca_file": "ca.pem",
        "timeout": 10,
        **extra,
    }
    return "{" + ", ".join(f"{key}: {value}" for key, value in settings.items()) + "}"


def account_yaml(name: str, connector: str, *, poll: float = 60) -> str:
    """One entry of the config's ``accounts:`` list."""
    return (
        f"  - name: {name}\n    address: {name}@example.com\n    connector: {connector}\n"
        f"    poll_interval_seconds: {poll:g}\n"
    )


class Desk:
    """A config folder, its runtime, and ways to run the service on it and read back what it did."""

    def __init__(self, root: Path, runtime: Runtime) -> None:
        self.root = root
        self.runtime = runtime

    @property
    def config_path(self) -> Path:
        """The config file."""
        return self.root / "mailgate.yaml"

    # --- running the service ------------------------------------------------------------------------

    def run_once(self) -> list[PassReport]:
        """One pass over every active account in this process, as ``mailgate run --once`` does."""
        return serve(self.runtime, once=True)

    def mailgate(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``mailgate`` console script with this config; its output is captured."""
        return subprocess.run(
            [str(MAILGATE), "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=_environment(env),
            timeout=120,
        )

    def start(self, *args: str, log: Path, options: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """Start ``mailgate -v OPTIONS run ARGS`` in the background, its standard error going to ``log``."""
        with log.open("wb") as sink:
            return subprocess.Popen(
                [str(MAILGATE), "--config", str(self.config_path), "-v", *options, "run", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=_environment(None),
            )

    # --- reading back -------------------------------------------------------------------------------

    def call(self, number: int) -> dict[str, Any]:
        """The call's view; fails the test if there is no such call."""
        with Session(self.runtime.engine) as session:
            view = call_view(session, number)
        assert view is not None, f"no call {number}"
        return view

    def request(self, number: int) -> dict[str, Any]:
        """The request's view (with its tasks)."""
        with Session(self.runtime.engine) as session:
            view = request_view(session, number)
        assert view is not None, f"no request {number}"
        return view

    def task(self, number: int) -> dict[str, Any]:
        """The task's view."""
        with Session(self.runtime.engine) as session:
            view = task_view(session, number)
        assert view is not None, f"no task {number}"
        return view

    def calls(self) -> list[tuple[int, str]]:
        """Every call as (number, summary), by number."""
        with Session(self.runtime.engine) as session:
            return [(c.number, c.summary) for c in session.exec(select(Call).order_by(col(Call.number)))]

    def new_calls(self) -> list[tuple[int, str]]:
        """The calls made by the service (not those of ``STAFF``)."""
        return [(number, summary) for number, summary in self.calls() if number not in (10, 11)]

    def outbox(self) -> list[dict[str, Any]]:
        """Every queued outgoing message, oldest first."""
        with Session(self.runtime.engine) as session:
            return outbox_view(session)

    def ledger(self) -> list[dict[str, Any]]:
        """The ledger, oldest first."""
        with Session(self.runtime.engine) as session:
            return ledger_view(session)

    def quarantine(self) -> list[dict[str, Any]]:
        """The quarantined messages, oldest first."""
        with Session(self.runtime.engine) as session:
            return quarantine_view(session)

    def status(self) -> dict[str, dict[str, Any]]:
        """``mailgate status --json``'s rows, by account."""
        return {row["account"]: row for row in status_view(self.runtime.engine, self.runtime.config.accounts)}


MakeDesk = Callable[..., Desk]  # the ``make_desk`` fixture: accounts YAML (, database=, extra=) -> a desk


def build_desk(
    root: Path, accounts: str, ca_file: Path, *, database: str = "sqlite:///mailgate.sqlite", extra: str = ""
) -> Desk:
    """Write the config (``extra``: more top-level YAML) and the CA, load ``STAFF``, open the runtime."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_file, root / "ca.pem")
    (root / "mailgate.yaml").write_text(
        f"database: {database}\nproduct_name: E2E Desk\nmail_domain: desk.example\n{extra}"
        f"accounts:\n{accounts}",
        encoding="utf-8",
    )
    (root / "staff.yaml").write_text(STAFF, encoding="utf-8")
    runtime = Runtime(load_config(root / "mailgate.yaml"))
    load_fixtures(runtime.engine, root / "staff.yaml")
    return Desk(root, runtime)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV, "MAILGATE_CONFIG")
    }
    return {**env, **(extra or {})}


# --- waiting and reading logs ---------------------------------------------------------------------


@contextmanager
def running(
    desk: Desk, log: Path, *args: str, options: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """``mailgate -v OPTIONS run ARGS`` in the background; stopped with SIGTERM at the end if running."""
    process = desk.start(*args, log=log, options=options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def alive(process: subprocess.Popen[bytes], log: Path) -> None:
    """Fail at once if ``mailgate run`` has exited (its log in the message)."""
    assert process.poll() is None, f"mailgate run exited early:\n{log.read_text()}"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT_LIMIT seconds."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_LIMIT:g} s waiting for {what}")
        time.sleep(0.05)


def events(log_text: str, event: str | None = None) -> list[dict[str, str]]:
    """The service's ``event=NAME key=value ...`` lines in a log, split back into their pairs."""
    found: list[dict[str, str]] = []
    for line in log_text.splitlines():
        start = line.find("event=")
        if start < 0 or (start > 0 and line[start - 1] != " "):
            continue
        pairs = dict(word.split("=", 1) for word in shlex.split(line[start:]) if "=" in word)
        if event is None or pairs["event"] == event:
            found.append(pairs)
    return found


# --- messages -------------------------------------------------------------------------------------


def mail(
    subject: str,
    sender: str = "ada@example.com",
    *,
    message_id: str,
    body: str = "Hello,\n\nplease help.\n",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """A small RFC 5322 message to the desk."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 09:30:00 +0000"
    msg["Message-ID"] = f"<{message_id}>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def fatal_bounce(message_id: str) -> bytes:
    """A delivery-status report (RFC 3464) for a recipient refused with 550."""
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {DESK_ADDRESS}
Subject: Undelivered Mail Returned to Sender
Message-ID: <{message_id}>
Date: Mon, 02 Mar 2026 09:30:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; nobody@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected

--B--
""".replace("\n", "\r\n").encode()


def without_sender(message_id: str) -> bytes:
    """A broken mail: no From header (the pipeline quarantines it)."""
    return (
        f"To: {DESK_ADDRESS}\r\nSubject: Who sent this?\r\nMessage-ID: <{message_id}>\r\n"
        "Date: Mon, 02 Mar 2026 09:30:00 +0000\r\n\r\nNobody signed this.\r\n"
    ).encode()
