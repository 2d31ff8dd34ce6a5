"""A ``${VAR}`` secret is needed only by what uses it: read-only commands run without the service's.

The config names an IMAP password and an SMTP password by environment variables that are not set,
as on an admin's shell where only the service's unit file has them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.registry import make_connector, make_transport
from engine.config.model import load_config
from engine.errors import ConfigError

MAILGATE = str(Path(sys.executable).with_name("mailgate"))
IMAP_SECRET, SMTP_SECRET = "MG_TEST_UNSET_IMAP_PASSWORD", "MG_TEST_UNSET_SMTP_PASSWORD"

CONFIG = f"""\
database: sqlite:///mailgate.sqlite
accounts:
  - name: helpdesk
    address: helpdesk@example.com
    connector:
      type: imap
      host: 127.0.0.1
      port: 1
      username: helpdesk
      password: ${{{IMAP_SECRET}}}
outgoing:
  servers:
    - name: main
      host: 127.0.0.1
      port: 1
      username: helpdesk
      password: ${{{SMTP_SECRET}}}
"""
IMAP_AT, SMTP_AT = "10:17", "17:17"  # line:col of each password's value
MAIL = (
    b"From: ada@example.com\nTo: helpdesk@example.com\nSubject: printer\n"
    b"Message-ID: <s-1@example.com>\n\nHi\n"
)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run mailgate in ``cwd`` without either secret in its environment; never a traceback."""
    env = {k: v for k, v in os.environ.items() if k not in (IMAP_SECRET, SMTP_SECRET, "MAILGATE_CONFIG")}
    done = subprocess.run([MAILGATE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installation whose two passwords come from unset environment variables."""
    monkeypatch.delenv(IMAP_SECRET, raising=False)
    monkeypatch.delenv(SMTP_SECRET, raising=False)
    (tmp_path / "mailgate.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "m.eml").write_bytes(MAIL)
    return tmp_path


def test_read_only_commands_run_without_the_services_secrets(desk: Path) -> None:
    processed = run(desk, "process", "--account", "helpdesk", "--json", "m.eml")
    assert processed.returncode == 0, processed.stderr
    number = json.loads(processed.stdout)["number"]
    for args in (
        ("status",),
        ("show", "call", str(number)),
        ("outbox",),
        ("quarantine", "list"),
        ("check", "--list"),
        ("explain", "--account", "helpdesk", "m.eml"),
    ):
        done = run(desk, *args)
        assert "environment variable" not in done.stderr, (args, done.stderr)
        assert done.returncode == (3 if args == ("status",) else 0), (args, done.stderr)


def test_run_refuses_to_start_naming_every_unset_secret_at_its_key(desk: Path) -> None:
    done = run(desk, "run", "--once")
    assert done.returncode == 1
    config = desk / "mailgate.yaml"
    assert f"{config}:{IMAP_AT}: environment variable {IMAP_SECRET} is not set" in done.stderr
    assert f"{config}:{SMTP_AT}: environment variable {SMTP_SECRET} is not set" in done.stderr


def test_outbox_send_refuses_naming_the_outgoing_servers_unset_secret(desk: Path) -> None:
    done = run(desk, "outbox", "send")
    assert done.returncode == 1
    assert f"{desk / 'mailgate.yaml'}:{SMTP_AT}: environment variable {SMTP_SECRET} is not set" in done.stderr
    assert IMAP_SECRET not in done.stderr


def test_check_reports_every_unset_secret_the_service_will_need(desk: Path) -> None:
    done = run(desk, "check")
    assert done.returncode == 1
    assert f"mailgate.yaml:{IMAP_AT}: environment variable {IMAP_SECRET} is not set" in done.stderr
    assert f"mailgate.yaml:{SMTP_AT}: environment variable {SMTP_SECRET} is not set" in done.stderr


def test_making_the_connector_or_transport_names_the_variable_and_its_position(desk: Path) -> None:
    config = load_config(desk / "mailgate.yaml")
    with pytest.raises(ConfigError) as connector:
        make_connector("helpdesk", config.accounts[0].connector, desk)
    assert str(connector.value) == (
        f"{desk / 'mailgate.yaml'}:{IMAP_AT}: environment variable {IMAP_SECRET} is not set: "
        "account 'helpdesk''s connector needs it"
    )
    with pytest.raises(ConfigError) as transport:
        make_transport(config.outgoing.servers[0], desk)
    assert str(transport.value).endswith(f"{SMTP_SECRET} is not set: outgoing server 'main' needs it")


def test_a_set_secret_is_used_as_before(desk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IMAP_SECRET, "s3cret")
    monkeypatch.setenv(SMTP_SECRET, "other")
    config = load_config(desk / "mailgate.yaml")
    assert config.accounts[0].connector["password"] == "s3cret"
    assert config.outgoing.servers[0].settings["password"] == "other"
    assert config.unset_secrets() == []
