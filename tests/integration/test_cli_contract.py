"""The ``mailgate`` command line as outside tools see it: the real console script, run as a subprocess.

Every test works in a temporary installation made by ``mailgate init``, with its own small fixture
file and .eml files. Field names and types checked here are a contract: renaming one breaks callers.
Every command run here is also checked never to print a Python traceback.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MAILGATE = Path(sys.executable).parent / "mailgate"

FIXTURES = """\
groups:
  - name: Service Desk
  - name: Finance Approvers
people:
  - {email: ada@example.com, name: Ada Lovelace, user: true}
  - {email: grace@example.com, name: Grace Hopper, user: false, analyst: true, groups: [Service Desk]}
  - {email: linus@example.com, name: Linus Admin, user: false, analyst: true, take_over: true,
     groups: [Service Desk]}
  - {email: fran@example.com, name: Fran Allen, analyst: true, groups: [Finance Approvers]}
calls:
  - {number: 100, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     assigned_group: Service Desk, summary: Printer on floor 3 jams, description: It jams on every job.}
  - {number: 101, status: closed, user: ada@example.com, assigned_analyst: grace@example.com,
     forwarded_by: grace@example.com, forwarded_to: linus@example.com, summary: New keyboard}
requests:
  - {number: 200, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     summary: New laptop, description: A laptop for the new starter.}
tasks:
  - {number: 300, kind: approval, status: open, request: 200, sequence: 1, approver: fran@example.com,
     summary: Approve the laptop}
  - {number: 301, kind: task, status: pending, request: 200, sequence: 2, assigned_analyst: grace@example.com,
     summary: Order the laptop, description: From the usual supplier.}
  - {number: 302, kind: user_approval, status: pending, request: 200, sequence: 3,
     approver_group: Finance Approvers}
"""


@dataclass(frozen=True)
class Desk:
    """A temporary installation: its folder and its config file."""

    root: Path
    config: Path

    @property
    def database(self) -> Path:
        """The SQLite file the starter config points at."""
        return self.root / "mailgate.sqlite"


def _environment(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAILGATE_CONFIG", "MAILGATE_DEBUG", *drop)}
    env.update(extra or {})
    return env


def mailgate(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; fail the test if it printed a traceback."""
    if not MAILGATE.exists():
        pytest.fail(f"{MAILGATE} not found: install mailgate in this venv (pip install -e '.[test]')")
    proc = subprocess.run(
        [str(MAILGATE), *(str(a) for a in args)],
        cwd=cwd,
        env=_environment(env, drop_env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert exit status 0 and return the process."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def json_lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON objects a ``--json`` command printed, one per line."""
    return [json.loads(line) for line in ok(proc).stdout.splitlines() if line.strip()]


BOUNDARY_VERDICT = "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"


def write_eml(
    path: Path,
    *,
    subject: str,
    sender: str = "Ada Lovelace <ada@example.com>",
    message_id: str | None = None,
    body: str = "Hello,\n\nplease help.\n\nAda\n",
    attachment: tuple[str, bytes] | None = None,
) -> Path:
    """Write a small RFC 5322 message (optionally with one attachment) and return its path."""
    mid = message_id or f"{path.stem}@example.com"
    head = BOUNDARY_VERDICT  # as the mail server hands it over (trusted by the ``loaded`` installation)
    head += f"From: {sender}\r\nTo: helpdesk@example.com\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
    head += "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    if attachment is None:
        text = head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.replace("\n", "\r\n")
        path.write_bytes(text.encode("utf-8"))
        return path
    name, data = attachment
    encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    text = (
        head
        + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        + "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + body.replace("\n", "\r\n")
        + "\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
        + f'Content-Disposition: attachment; filename="{name}"\r\n'
        + "Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + "\r\n--b1--\r\n"
    )
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def starter_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One installation made by ``mailgate init``, copied by each test that needs a fresh one."""
    root = tmp_path_factory.mktemp("starter") / "desk"
    ok(mailgate("init", root, cwd=root.parent))
    return root


@pytest.fixture(scope="module")
def loaded_template(starter_template: Path) -> Path:
    """A copy of the starter installation with the contract-shaped fixture file loaded.

    Its account trusts the verdicts of ``mx.example.com``, as the starter config's comment shows,
    so that commands from the mails ``write_eml`` makes are carried out.
    """
    root = starter_template.parent.parent / "loaded" / "desk"
    shutil.copytree(starter_template, root)
    config = root / "mailgate.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("# trusted_authserv_ids:", "trusted_authserv_ids:"),
        encoding="utf-8",
    )
    fixtures = root / "people.yaml"
    fixtures.write_text(FIXTURES, encoding="utf-8")
    ok(mailgate("--config", root / "mailgate.yaml", "db", "load", fixtures, cwd=root))
    return root


@pytest.fixture
def desk(starter_template: Path, tmp_path: Path) -> Desk:
    """A fresh installation as ``mailgate init`` makes it (config, local pack, mailbox, SQLite database)."""
    root = tmp_path / "desk"
    shutil.copytree(starter_template, root)
    return Desk(root, root / "mailgate.yaml")


@pytest.fixture
def loaded(loaded_template: Path, tmp_path: Path) -> Desk:
    """A fresh installation with the contract-shaped fixture file (``FIXTURES``) loaded."""
    root = tmp_path / "desk"
    shutil.copytree(loaded_template, root)
    return Desk(root, root / "mailgate.yaml")


def database_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite file, to compare before and after a command."""
    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(repr, connection.execute(f'SELECT * FROM "{t}"'))) for t in tables}


# --- init and check ------------------------------------------------------------------------------


def test_init_writes_the_starter_files_and_check_accepts_them(tmp_path: Path) -> None:
    root = tmp_path / "desk"
    ok(mailgate("init", root, cwd=tmp_path))
    desk = Desk(root, root / "mailgate.yaml")
    assert desk.config.is_file()
    assert (desk.root / "rules" / "local.yaml").is_file()
    assert (desk.root / "mailbox").is_dir()
    assert desk.database.is_file()
    proc = ok(mailgate("--config", desk.config, "check", cwd=desk.root))
    assert f"ok: config {desk.config}" in proc.stdout
    assert "ok: rule pack default" in proc.stdout
    assert "ok: rule pack local" in proc.stdout


def test_init_requires_authenticated_senders_for_commands_and_shows_how_to_trust_a_boundary(
    desk: Desk,
) -> None:
    text = desk.config.read_text(encoding="utf-8")
    assert "      commands_require_authentication: true" in text
    assert "      # trusted_authserv_ids: [mx.example.com]" in text
    proc = ok(mailgate("--config", desk.config, "check", cwd=desk.root))
    assert (
        "warning: account helpdesk refuses every command: commands_require_authentication is on"
        in proc.stdout
    )


def test_check_warns_about_every_account_that_accepts_commands_without_authentication(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        textwrap.dedent(
            """            database: sqlite:///desk.sqlite
            accounts:
              - name: open
                connector: memory
              - name: guarded
                connector: memory
                flags: {commands_require_authentication: true}
                authentication: {trusted_authserv_ids: [mx.example.com]}
              - name: legacy
                connector: memory
                flags: {commands_require_authentication: false}
            """
        ),
        encoding="utf-8",
    )
    out = ok(mailgate("check", cwd=tmp_path)).stdout
    warned = [line.split()[2] for line in out.splitlines() if line.startswith("warning: account")]
    assert warned == ["open", "legacy"]
    assert "set flags.commands_require_authentication: true (docs/security.md)" in out


def test_init_refuses_to_overwrite_an_existing_installation(desk: Desk) -> None:
    proc = mailgate("init", desk.root, cwd=desk.root.parent)
    assert proc.returncode == 1
    assert "already exists" in proc.stderr


def test_check_reports_a_broken_pack_as_file_line_col_and_exits_1(desk: Desk) -> None:
    pack = desk.root / "rules" / "local.yaml"
    pack.write_text(
        textwrap.dedent(
            """\
            extends: default
            rules:
              - name: fly_away
                when: {intent: unrecognised}
                outcome: ignored
                then:
                  - do: fly
            """
        ),
        encoding="utf-8",
    )
    proc = mailgate("--config", desk.config, "check", cwd=desk.root)
    assert proc.returncode == 1
    assert f"{pack.resolve()}:7:13: unknown action 'fly'" in proc.stderr


def test_check_reports_a_broken_config_as_file_line_col_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            database: sqlite:///desk.sqlite
            accounts:
              - name: helpdesk
                rule_pack: default
                flag: {}
                flags:
                  auto_reply: maybe
            """
        ),
        encoding="utf-8",
    )
    proc = mailgate("--config", config, "check", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{config}:5:5: unknown key 'flag' in an account (did you mean 'flags'?)" in proc.stderr
    assert f"{config}:7:19: auto_reply must be true or false, not 'maybe'" in proc.stderr


def test_check_reports_invalid_yaml_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text("database: sqlite:///x.sqlite\naccounts: [unclosed\n", encoding="utf-8")
    proc = mailgate("check", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{config}:3:1: invalid YAML" in proc.stderr


def test_check_validates_without_touching_the_database_unless_asked(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text("database: sqlite:///never.sqlite\naccounts:\n  - name: helpdesk\n", encoding="utf-8")
    out = ok(mailgate("check", cwd=tmp_path)).stdout
    assert f"ok: config {config}" in out
    assert "ok: database" not in out
    assert not (tmp_path / "never.sqlite").exists()
    out = ok(mailgate("check", "--database", cwd=tmp_path)).stdout
    assert f"ok: database sqlite:///{tmp_path / 'never.sqlite'}" in out


def test_check_passes_while_postgresql_is_down_and_check_database_says_so(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "database: postgresql+psycopg://postgres@127.0.0.1:1/desk\naccounts:\n  - name: helpdesk\n",
        encoding="utf-8",
    )
    ok(mailgate("check", cwd=tmp_path))
    proc = mailgate("check", "--database", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{config}:1:11: cannot open database" in proc.stderr


def test_check_list_names_facts_actions_and_outcomes(tmp_path: Path) -> None:
    out = ok(mailgate("check", "--list", cwd=tmp_path)).stdout
    assert "sender.known" in out
    assert "sender.authenticated" in out
    assert "sender.authentication" in out and "dmarc, dkim, arc, reply_token, none" in out
    assert "flags.commands_require_authentication" in out
    assert "log_call" in out
    assert "Outcomes:" in out and "logged" in out


# --- where the config is found -------------------------------------------------------------------


def test_config_is_found_through_the_config_option(desk: Desk, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = ok(mailgate("--config", desk.config, "check", cwd=elsewhere))
    assert f"ok: config {desk.config}" in proc.stdout


def test_config_is_found_through_the_mailgate_config_variable(desk: Desk, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = ok(mailgate("check", cwd=elsewhere, env={"MAILGATE_CONFIG": str(desk.config)}))
    assert f"ok: config {desk.config}" in proc.stdout


def test_config_is_found_as_mailgate_yaml_in_the_current_folder(desk: Desk) -> None:
    proc = ok(mailgate("check", cwd=desk.root))
    assert f"ok: config {desk.config}" in proc.stdout


def test_the_config_option_wins_over_the_variable_and_the_variable_over_the_current_folder(
    desk: Desk, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("accounts: 3\n", encoding="utf-8")
    ok(mailgate("--config", desk.config, "check", cwd=tmp_path, env={"MAILGATE_CONFIG": str(broken)}))
    proc = mailgate("check", cwd=desk.root, env={"MAILGATE_CONFIG": str(broken)})
    assert proc.returncode == 1
    assert f"{broken}:1:11: accounts must be a list" in proc.stderr


def test_a_command_without_any_config_says_how_to_make_one(tmp_path: Path) -> None:
    proc = mailgate("outbox", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{tmp_path / 'mailgate.yaml'}:1:1: config file not found" in proc.stderr
    assert "mailgate init" in proc.stderr


def test_a_config_value_may_come_from_an_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "database: sqlite:///${MG_CONTRACT_DB_NAME}.sqlite\naccounts:\n  - name: helpdesk\n",
        encoding="utf-8",
    )
    fixtures = tmp_path / "people.yaml"
    fixtures.write_text(FIXTURES, encoding="utf-8")
    ok(mailgate("db", "load", fixtures, cwd=tmp_path, env={"MG_CONTRACT_DB_NAME": "from-env"}))
    assert (tmp_path / "from-env.sqlite").is_file()


def test_an_unset_environment_variable_is_reported_at_its_key(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "database: postgresql://mailgate:${MG_CONTRACT_UNSET_SECRET}@127.0.0.1/desk\n"
        "accounts:\n  - name: helpdesk\n",
        encoding="utf-8",
    )
    proc = mailgate("check", cwd=tmp_path, drop_env=("MG_CONTRACT_UNSET_SECRET",))
    assert proc.returncode == 1
    assert f"{config}:1:11: environment variable MG_CONTRACT_UNSET_SECRET is not set" in proc.stderr


# --- db load -------------------------------------------------------------------------------------


def test_db_load_accepts_the_documented_fixture_shape_and_is_repeatable(loaded: Desk) -> None:
    fixtures = loaded.root / "people.yaml"
    before = database_rows(loaded.database)
    ok(mailgate("db", "load", fixtures, cwd=loaded.root))
    assert database_rows(loaded.database) == before


def test_db_load_reports_every_mistake_with_its_position_and_writes_nothing(desk: Desk) -> None:
    bad = desk.root / "bad.yaml"
    bad.write_text(
        "people:\n  - {email: ada@example.com, user: yes-please}\n"
        "calls:\n  - {number: 5, user: nobody@example.com}\n",
        encoding="utf-8",
    )
    before = database_rows(desk.database)
    proc = mailgate("db", "load", bad, cwd=desk.root)
    assert proc.returncode == 1
    assert f"{bad}:2:36: " in proc.stderr
    assert f"{bad}:4:23: " in proc.stderr
    assert database_rows(desk.database) == before


# --- process ---------------------------------------------------------------------------------------


def test_process_json_has_the_documented_fields_and_types(loaded: Desk) -> None:
    mail = write_eml(loaded.root / "new.eml", subject="Outlook crashes", message_id="new-1@example.com")
    [result] = json_lines(mailgate("process", "--account", "helpdesk", "--json", mail, cwd=loaded.root))
    assert result["message_id"] == "new-1@example.com"
    assert result["outcome"] == "logged"
    assert result["rule"] == "log_new_call"
    assert result["entity"] == "call"
    assert isinstance(result["number"], int) and result["number"] > 101
    assert isinstance(result["replies"], list) and len(result["replies"]) == 1
    reply = result["replies"][0]
    assert reply["to"] == "ada@example.com"
    assert isinstance(reply["subject"], str) and f"[CALL#{result['number']}]" in reply["subject"]
    assert result["notifications"] == []


def test_process_prints_one_json_line_per_message_of_a_folder(loaded: Desk) -> None:
    inbox = loaded.root / "inbox"
    inbox.mkdir()
    write_eml(inbox / "a.eml", subject="First problem")
    write_eml(inbox / "b.eml", subject="[CALL#100] more detail")
    results = json_lines(mailgate("process", "--account", "helpdesk", "--json", inbox, cwd=loaded.root))
    assert [r["outcome"] for r in results] == ["logged", "updated"]
    assert results[1]["number"] == 100


def test_processing_the_same_mail_twice_is_a_duplicate_that_changes_nothing(loaded: Desk) -> None:
    mail = write_eml(loaded.root / "once.eml", subject="Only once please")
    ok(mailgate("process", "--account", "helpdesk", mail, cwd=loaded.root))
    before = database_rows(loaded.database)
    [again] = json_lines(mailgate("process", "--account", "helpdesk", "--json", mail, cwd=loaded.root))
    assert again["outcome"] == "duplicate"
    assert database_rows(loaded.database) == before


def test_unreadable_mail_is_quarantined_and_listed(loaded: Desk) -> None:
    junk = loaded.root / "junk.eml"
    junk.write_bytes(b"this is not an email at all")
    [result] = json_lines(mailgate("process", "--account", "helpdesk", "--json", junk, cwd=loaded.root))
    assert result["outcome"] == "quarantined"
    assert isinstance(result["reason"], str) and result["reason"]
    assert isinstance(result["quarantine_id"], int)
    [held] = json_lines(mailgate("quarantine", "list", "--json", cwd=loaded.root))
    assert held["id"] == result["quarantine_id"]
    assert held["status"] == "held"
    assert held["reason"] == result["reason"]
    shown = json.loads(ok(mailgate("quarantine", "show", str(held["id"]), cwd=loaded.root)).stdout)
    assert shown["id"] == held["id"]
    raw = ok(mailgate("quarantine", "show", str(held["id"]), "--raw", cwd=loaded.root)).stdout
    assert raw == "this is not an email at all"
    retry = mailgate("quarantine", "retry", str(held["id"]), cwd=loaded.root)
    assert retry.returncode == 1
    assert "still quarantined" in retry.stdout


def test_process_of_an_unknown_account_names_the_closest_one(loaded: Desk) -> None:
    mail = write_eml(loaded.root / "m.eml", subject="Hello")
    proc = mailgate("process", "--account", "helpdesks", mail, cwd=loaded.root)
    assert proc.returncode == 1
    assert "no account named 'helpdesks' (did you mean 'helpdesk'?)" in proc.stderr


# --- show and outbox --------------------------------------------------------------------------------


def test_show_call_json_has_the_documented_fields(loaded: Desk) -> None:
    mail = write_eml(
        loaded.root / "update.eml",
        subject="Re: [CALL#100] still jamming",
        body="It jammed again this morning.\n",
        attachment=("jam.txt", b"paper path error 42\n"),
    )
    [result] = json_lines(mailgate("process", "--account", "helpdesk", "--json", mail, cwd=loaded.root))
    assert (result["outcome"], result["entity"], result["number"]) == ("updated", "call", 100)
    call = json.loads(ok(mailgate("show", "call", "100", "--json", cwd=loaded.root)).stdout)
    assert call["number"] == 100
    assert call["status"] == "open"
    assert call["user"] == "ada@example.com"
    assert call["assigned_analyst"] == "grace@example.com"
    assert "logging_analyst" in call and call["logging_analyst"] is None
    assert call["description"] == "It jams on every job."
    assert call["updated_by_email"] is True
    assert isinstance(call["history"], list) and call["history"]
    for entry in call["history"]:
        assert set(entry) >= {"kind", "text", "security_profile"}
        assert all(isinstance(entry[k], str) for k in ("kind", "text", "security_profile"))
    assert any("It jammed again this morning." in e["text"] for e in call["history"])
    [attachment] = call["attachments"]
    assert attachment["filename"] == "jam.txt"
    assert attachment["size"] == len(b"paper path error 42\n")
    assert attachment["security_profile"] == "Unspecified"


def test_show_task_has_its_kind_and_request(loaded: Desk) -> None:
    task = json.loads(ok(mailgate("show", "task", "300", "--json", cwd=loaded.root)).stdout)
    assert task["number"] == 300
    assert task["kind"] == "approval"
    assert task["request"] == 200
    assert task["status"] == "open"
    assert isinstance(task["history"], list) and isinstance(task["attachments"], list)


def test_show_request_lists_its_tasks(loaded: Desk) -> None:
    request = json.loads(ok(mailgate("show", "request", "200", "--json", cwd=loaded.root)).stdout)
    assert request["number"] == 200
    assert request["user"] == "ada@example.com"
    assert [(t["number"], t["kind"], t["status"]) for t in request["tasks"]] == [
        (300, "approval", "open"),
        (301, "task", "pending"),
        (302, "user_approval", "pending"),
    ]


def test_show_of_a_missing_item_exits_1_with_a_message(loaded: Desk) -> None:
    proc = mailgate("show", "call", "999", cwd=loaded.root)
    assert proc.returncode == 1
    assert "no call 999" in proc.stderr


def test_outbox_json_has_the_documented_fields(loaded: Desk) -> None:
    mail = write_eml(
        loaded.root / "close.eml", subject="[CLOSE#100] fixed, thanks", message_id="close@example.com"
    )
    [result] = json_lines(mailgate("process", "--account", "helpdesk", "--json", mail, cwd=loaded.root))
    assert result["outcome"] == "closed"
    [message] = json_lines(mailgate("outbox", "--json", cwd=loaded.root))
    assert isinstance(message["id"], int)
    assert message["type"] == "call_closed"
    assert message["to"] == "ada@example.com"
    assert message["subject"] == result["replies"][0]["subject"]
    assert isinstance(message["body"], str) and "100" in message["body"]
    assert isinstance(message["message_id"], str) and "@" in message["message_id"]
    assert message["in_reply_to"] == "close@example.com"
    assert message["status"] == "queued"


# --- explain --------------------------------------------------------------------------------------


def test_explain_prints_the_rules_tried_and_writes_nothing(loaded: Desk) -> None:
    ok(
        mailgate(
            "process", "--account", "helpdesk", write_eml(loaded.root / "a.eml", subject="A"), cwd=loaded.root
        )
    )
    mail = write_eml(loaded.root / "b.eml", subject="Monitor is dark")
    before = database_rows(loaded.database)
    text = ok(mailgate("explain", "--account", "helpdesk", mail, cwd=loaded.root)).stdout
    assert "rules tried:" in text
    assert "delete_fatal_bounce" in text
    assert "MATCH log_new_call" in text
    assert "(fails: intent in ['approve_task', 'reject_task'])" in text  # membership, not ==
    assert "outcome: logged" in text
    data = json.loads(
        ok(mailgate("explain", "--account", "helpdesk", "--json", mail, cwd=loaded.root)).stdout
    )
    assert data["rule"] == "log_new_call" and data["outcome"] == "logged"
    assert data["rules_tried"][-1] == {"rule": "log_new_call", "matched": True, "why": ""}
    assert all(not t["matched"] for t in data["rules_tried"][:-1])
    assert database_rows(loaded.database) == before
    [result] = json_lines(mailgate("process", "--account", "helpdesk", "--json", mail, cwd=loaded.root))
    assert result["outcome"] == "logged"


# --- no tracebacks, ever ----------------------------------------------------------------------------


def test_a_missing_mail_path_is_a_message_not_a_traceback(loaded: Desk) -> None:
    missing = loaded.root / "nowhere.eml"
    for args in (
        ("process", "--account", "helpdesk", missing),
        ("explain", "--account", "helpdesk", missing),
    ):
        proc = mailgate(*args, cwd=loaded.root)
        assert proc.returncode == 1
        assert "nowhere.eml" in proc.stderr
        assert proc.stderr.startswith("mailgate: ")


def test_check_reports_an_unreadable_database_at_the_config_database_line(tmp_path: Path) -> None:
    (tmp_path / "corrupt.sqlite").write_bytes(b"this is no database\x00\x01\x02" * 200)
    (tmp_path / "mailgate.yaml").write_text(
        "accounts:\n  - name: helpdesk\ndatabase: sqlite:///corrupt.sqlite\n", encoding="utf-8"
    )
    proc = mailgate("check", "--database", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{tmp_path / 'mailgate.yaml'}:3:11: cannot open database" in proc.stderr
    assert "sqlalche.me" not in proc.stderr


def test_a_corrupt_sqlite_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "corrupt.sqlite").write_bytes(b"this is no database\x00\x01\x02" * 200)
    (tmp_path / "mailgate.yaml").write_text(
        "database: sqlite:///corrupt.sqlite\naccounts:\n  - name: helpdesk\n", encoding="utf-8"
    )
    (tmp_path / "people.yaml").write_text(FIXTURES, encoding="utf-8")
    mail = write_eml(tmp_path / "m.eml", subject="Hello")
    commands: list[tuple[str | Path, ...]] = [
        ("db", "load", tmp_path / "people.yaml"),
        ("process", "--account", "helpdesk", mail),
        ("explain", "--account", "helpdesk", mail),
        ("show", "call", "1"),
        ("outbox",),
        ("quarantine", "list"),
    ]
    for args in commands:
        proc = mailgate(*args, cwd=tmp_path)
        assert proc.returncode == 1, args
        assert "cannot open database" in proc.stderr, args


def test_output_into_a_pipe_closed_by_its_reader_ends_quietly(loaded: Desk) -> None:
    """``mailgate outbox | head -1`` must not end with an error message."""
    mail = write_eml(loaded.root / "m.eml", subject="Something to reply to")
    ok(mailgate("process", "--account", "helpdesk", mail, cwd=loaded.root))
    proc = subprocess.Popen(
        [str(MAILGATE), "outbox"],
        cwd=loaded.root,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before mailgate writes its first line
    stderr = proc.stderr.read()
    proc.wait(timeout=300)
    assert "Traceback" not in stderr
    assert "internal error" not in stderr, stderr
    assert "BrokenPipe" not in stderr, stderr


def test_a_database_url_that_is_not_a_url_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "mailgate.yaml").write_text(
        "database: 'not a url at all'\naccounts:\n  - name: helpdesk\n", encoding="utf-8"
    )
    proc = mailgate("outbox", cwd=tmp_path)
    assert proc.returncode == 1
    assert "invalid database URL" in proc.stderr
