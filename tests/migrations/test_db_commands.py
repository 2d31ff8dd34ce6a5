"""``mailgate db upgrade|current|history``, ``--version``, ``run --upgrade``, and commands' version check.

Through the real console script (a subprocess), except where the head must look newer than the
newest shipped revision (``head_revision`` patched in this process, with click's runner).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from migration_helpers import (
    DEMO_MAILBOX,
    Rows,
    create_as_0bdbdc9,
    load_r1_rows,
    next_revision,
    recorded_revision,
    set_recorded_revision,
)

import engine
from engine.cli import main
from engine.storage import schema
from engine.storage.schema import head_revision

MAILGATE = str(Path(sys.executable).with_name("mailgate"))
NEW_MAIL = (
    b"From: ada@example.com\r\nTo: helpdesk@example.com\r\nSubject: printer\r\n"
    b"Message-ID: <schema-check@example.com>\r\n\r\nHi\r\n"
)


def mailgate(cwd: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run the console script in ``cwd``; never a traceback."""
    done = subprocess.run(
        [MAILGATE, *args], cwd=cwd, input=stdin.decode(), capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    """A starter installation (``mailgate init``) with its SQLite database at head."""
    assert mailgate(tmp_path, "init").returncode == 0
    return tmp_path


def database_url(desk: Path) -> str:
    """The URL of the starter installation's database."""
    return f"sqlite:///{desk / 'mailgate.sqlite'}"


def test_version_shows_the_package_version_and_the_schema_it_needs(tmp_path: Path) -> None:
    done = mailgate(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"mailgate {engine.__version__} (database schema {head_revision()})"
    assert importlib.metadata.version("mailgate") == engine.__version__, "pyproject reads the one version"


def test_db_history_lists_every_revision_newest_first_with_the_head_marked(tmp_path: Path) -> None:
    lines = mailgate(tmp_path, "db", "history").stdout.splitlines()
    assert [line.split()[0] for line in lines] == [f"r{n}" for n in range(len(lines), 0, -1)]
    assert lines[0].endswith("(head)") and lines[0].startswith(head_revision())
    assert "The schema of mailgate 0.1.0 (commit 0bdbdc9)" in lines[-1]


def test_db_current_tells_a_database_at_head(desk: Path) -> None:
    done = mailgate(desk, "db", "current")
    assert (done.returncode, done.stdout.strip()) == (0, f"{head_revision()} (head)")


def test_db_upgrade_takes_a_0bdbdc9_database_to_head_and_its_mail_stays_processed(
    desk: Path, r1_rows: Rows
) -> None:
    (desk / "mailgate.sqlite").unlink()
    url = database_url(desk)
    create_as_0bdbdc9(url)
    load_r1_rows(url, r1_rows)
    assert "made by mailgate 0.1.0 before schema versions" in mailgate(desk, "db", "current").stdout

    done = mailgate(desk, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{url} has no schema version but r1's tables: recorded it as r1"
    assert lines[-1].endswith(
        f"{head_revision()} (head)" + ("" if len(lines) > 2 else ": nothing to upgrade")
    )
    assert mailgate(desk, "db", "current").stdout.strip() == f"{head_revision()} (head)"

    first = DEMO_MAILBOX / "01-new-call.eml"
    again = mailgate(desk, "process", "--account", "helpdesk", "--json", str(first))
    assert json.loads(again.stdout)["outcome"] == "duplicate"


def test_run_upgrade_records_a_0bdbdc9_database_before_watching(desk: Path, r1_rows: Rows) -> None:
    (desk / "mailgate.sqlite").unlink()
    create_as_0bdbdc9(database_url(desk))
    load_r1_rows(database_url(desk), r1_rows)
    done = mailgate(desk, "run", "--once", "--upgrade")
    assert done.returncode == 0, done.stderr
    assert "has no schema version but r1's tables: recorded it as r1" in done.stdout
    assert "helpdesk: 0 processed" in done.stdout
    assert recorded_revision(database_url(desk)) == head_revision()


def test_every_command_refuses_a_newer_database_with_exit_1_and_deliver_asks_no_retry(desk: Path) -> None:
    set_recorded_revision(database_url(desk), next_revision())
    (desk / "mail.eml").write_bytes(NEW_MAIL)
    expected = f"mailgate: database schema is {next_revision()}, newer than this mailgate's {head_revision()}"
    for args, stdin in [
        (("process", "--account", "helpdesk", "mail.eml"), b""),
        (("deliver", "helpdesk"), NEW_MAIL),
        (("outbox",), b""),
        (("status",), b""),
        (("run", "--once"), b""),
        (("run", "--once", "--upgrade"), b""),
        (("db", "upgrade"), b""),
        (("show", "call", "1"), b""),
    ]:
        done = mailgate(desk, *args, stdin=stdin)
        assert done.returncode == 1, f"{args}: exit {done.returncode}, {done.stderr}"
        assert done.stderr.startswith(expected), f"{args}: {done.stderr}"
    checked = mailgate(desk, "check", "--database")
    assert checked.returncode == 1
    assert f"mailgate.yaml:3:11: database schema is {next_revision()}, newer" in checked.stderr
    assert "ok: database" not in checked.stdout


def test_commands_on_a_database_that_needs_an_upgrade_say_run_db_upgrade(
    desk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, needed = head_revision(), next_revision()
    monkeypatch.setattr(schema, "head_revision", lambda: needed)
    config = str(desk / "mailgate.yaml")
    expected = (
        f"mailgate: database schema is {current}, this mailgate needs {needed}: run mailgate db upgrade"
    )
    runner = CliRunner()
    for args, stdin in [
        (("deliver", "helpdesk"), NEW_MAIL),
        (("run", "--once"), b""),
        (("outbox",), b""),
    ]:
        result = runner.invoke(main, ["--config", config, *args], input=stdin)
        assert result.exit_code == 1, f"{args}: exit {result.exit_code} (75 would make the MTA retry forever)"
        assert result.stderr == expected + "\n", f"{args}: {result.stderr}"
    assert recorded_revision(database_url(desk)) == current
