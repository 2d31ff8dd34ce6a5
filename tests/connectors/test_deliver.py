"""``mailgate deliver ACCOUNT < message.eml``: an MTA's pipe delivery, through the real console script.

The exit status is what the MTA acts on: 0 means the message is safe (whatever its outcome), 75
(EX_TEMPFAIL) means "keep it and try again", anything else bounces it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from db_faults import POISON, sqlite_triggers

MAILGATE = Path(sys.executable).parent / "mailgate"
PEOPLE = "people:\n  - {email: ada@example.com, name: Ada Lovelace, user: true}\n"


def mail(subject: str, message_id: str, sender: str = "Ada Lovelace <ada@example.com>") -> bytes:
    """A small CRLF message."""
    head = (
        f"From: {sender}\r\nTo: helpdesk@example.com\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
    )
    return (head + "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nIt jams on every job.\r\n").encode()


def mailgate(*args: str | Path, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run the installed console script with ``stdin`` piped in; fail the test on a traceback."""
    if not MAILGATE.exists():
        pytest.fail(f"{MAILGATE} not found: install mailgate in this venv (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if k not in ("MAILGATE_CONFIG", "MAILGATE_DEBUG")}
    proc = subprocess.run(
        [str(MAILGATE), *(str(a) for a in args)],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=300,
    )
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


@pytest.fixture(scope="module")
def desk_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mailgate init`` plus one known user, made once and copied by each test."""
    root = tmp_path_factory.mktemp("deliver") / "desk"
    assert mailgate("init", root, cwd=root.parent).returncode == 0
    (root / "people.yaml").write_text(PEOPLE, encoding="utf-8")
    assert (
        mailgate("--config", root / "mailgate.yaml", "db", "load", root / "people.yaml", cwd=root).returncode
        == 0
    )
    return root


@pytest.fixture
def desk(desk_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the installation; commands run in it, so ./mailgate.yaml is found."""
    root = tmp_path / "desk"
    shutil.copytree(desk_template, root)
    return root


def test_a_piped_message_becomes_a_call_and_its_outcome_is_printed(desk: Path) -> None:
    """A new mail from a known user logs a call; the line says so and the exit status is 0."""
    proc = mailgate("deliver", "helpdesk", cwd=desk, stdin=mail("Printer jams", "p1@example.com"))
    assert (proc.returncode, proc.stdout) == (0, "stdin: logged call 1 [log_new_call]\n")
    shown = mailgate("show", "call", "1", "--json", cwd=desk)
    assert json.loads(shown.stdout)["summary"] == "Printer jams"


def test_the_same_message_delivered_again_is_a_duplicate_and_still_succeeds(desk: Path) -> None:
    """An MTA retrying a message we already committed gets 0, and no second call is logged."""
    raw = mail("Printer jams", "p1@example.com")
    assert mailgate("deliver", "helpdesk", cwd=desk, stdin=raw).returncode == 0
    again = mailgate("deliver", "--json", "helpdesk", cwd=desk, stdin=raw)
    assert again.returncode == 0
    result = json.loads(again.stdout)
    assert (result["outcome"], result["origin"], result["message_id"]) == (
        "duplicate",
        "stdin",
        "p1@example.com",
    )
    assert mailgate("show", "call", "2", cwd=desk).returncode == 1


def test_a_message_that_cannot_be_handled_is_quarantined_and_still_succeeds(desk: Path) -> None:
    """No sender: kept in quarantine with its reason, exit 0 (the mail is safe, bouncing helps nobody)."""
    proc = mailgate("deliver", "--json", "helpdesk", cwd=desk, stdin=b"Subject: who sent this?\r\n\r\nx\r\n")
    assert proc.returncode == 0
    result = json.loads(proc.stdout)
    assert (result["outcome"], result["reason"]) == ("quarantined", "no sender: From header missing")
    held = mailgate("quarantine", "show", str(result["quarantine_id"]), "--raw", cwd=desk)
    assert held.stdout == "Subject: who sent this?\r\n\r\nx\r\n"


def test_an_unreachable_database_asks_the_mta_to_retry(desk: Path) -> None:
    """Exit 75 (EX_TEMPFAIL) with the reason on stderr: the MTA keeps the message and tries later."""
    config = desk / "mailgate.yaml"
    text = config.read_text(encoding="utf-8").replace(
        "database: sqlite:///mailgate.sqlite", "database: postgresql://mailgate@127.0.0.1:1/mailgate"
    )
    config.write_text(text, encoding="utf-8")
    proc = mailgate("deliver", "helpdesk", cwd=desk, stdin=mail("Printer jams", "p1@example.com"))
    assert proc.returncode == 75
    assert "cannot open database" in proc.stderr and "the MTA will retry" in proc.stderr
    assert proc.stdout == ""


def test_a_database_error_the_message_causes_quarantines_it_and_exits_0(desk: Path) -> None:
    """Not an outage: the database refused this message's values; the next message goes through."""
    database = sqlite3.connect(desk / "mailgate.sqlite")
    for statement in sqlite_triggers():
        database.execute(statement)
    database.commit()
    database.close()
    poisoned = mailgate(
        "deliver", "--json", "helpdesk", cwd=desk, stdin=mail(f"Printer {POISON}", "p1@example.com")
    )
    assert poisoned.returncode == 0, poisoned.stderr
    result = json.loads(poisoned.stdout)
    assert (result["outcome"], result["reason"]) == (
        "quarantined",
        "database error: SQLITE_ERROR: integer overflow",
    )
    after = mailgate("deliver", "helpdesk", cwd=desk, stdin=mail("Scanner jams", "p2@example.com"))
    assert (after.returncode, after.stdout) == (0, "stdin: logged call 1 [log_new_call]\n")


def test_a_locked_database_is_an_outage_and_asks_the_mta_to_retry(desk: Path) -> None:
    """Another process holds the write lock past the busy timeout: exit 75, nothing kept."""
    holder = sqlite3.connect(desk / "mailgate.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = mailgate("deliver", "helpdesk", cwd=desk, stdin=mail("Printer jams", "p1@example.com"))
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 75
    assert "database is locked" in proc.stderr and "the MTA will retry" in proc.stderr
    assert mailgate("show", "call", "1", cwd=desk).returncode == 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("deliver", "helpdeks"), b"Subject: x\r\n\r\nx\r\n", "no account named 'helpdeks' (did you mean"),
        (("deliver", "helpdesk"), b"", "no message on standard input"),
        (
            ("--config", "missing.yaml", "deliver", "helpdesk"),
            b"Subject: x\r\n\r\nx\r\n",
            "config file not found",
        ),
    ],
)
def test_a_mistake_in_the_command_or_config_exits_1(
    desk: Path, args: tuple[str, ...], stdin: bytes, message: str
) -> None:
    """A wrong account name, nothing piped in or no config: exit 1 and a message, nothing processed."""
    before = (desk / "mailgate.sqlite").read_bytes()
    proc = mailgate(*args, cwd=desk, stdin=stdin)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert (desk / "mailgate.sqlite").read_bytes() == before
