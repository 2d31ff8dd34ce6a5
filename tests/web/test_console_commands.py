"""``mailgate admin`` and ``mailgate web``, and the ``service.web`` settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.config.model import load_config
from engine.errors import ConfigError
from engine.storage.console import find_admin
from engine.storage.db import open_database
from engine.web.passwords import verify_password

CONFIG = """\
database: sqlite:///mailgate.sqlite
accounts:
  - {name: helpdesk, address: helpdesk@example.com}
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A minimal installation's config."""
    path = tmp_path / "mailgate.yaml"
    path.write_text(CONFIG)
    return path


def test_admin_add_stores_an_argon2_hash_and_the_role(config_path: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(
        main,
        ["--config", str(config_path), "admin", "add", "ops", "--role", "admin", "--password-stdin"],
        input="a long enough secret\n",
    )
    assert added.exit_code == 0, added.output
    assert "created admin ops" in added.output
    engine = open_database(load_config(config_path).database)
    try:
        stored = find_admin(engine, "ops")
    finally:
        engine.dispose()
    assert stored is not None and stored.role == "admin"
    assert verify_password(stored.password_hash, "a long enough secret")
    listed = runner.invoke(main, ["--config", str(config_path), "admin", "list"])
    assert "ops" in listed.output and "admin" in listed.output


def test_admin_add_refuses_a_short_password_and_an_unknown_role(config_path: Path) -> None:
    runner = CliRunner()
    short = runner.invoke(
        main, ["--config", str(config_path), "admin", "add", "ops", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    role = runner.invoke(main, ["--config", str(config_path), "admin", "add", "ops", "--role", "root"])
    assert role.exit_code == 2 and "'root' is not one of 'viewer', 'admin'" in role.output


def test_mailgate_web_refuses_to_serve_when_no_one_could_sign_in(config_path: Path) -> None:
    answer = CliRunner().invoke(main, ["--config", str(config_path), "web", "--listen", "127.0.0.1:8025"])
    assert answer.exit_code == 1
    assert "create an admin first (mailgate admin add NAME)" in answer.output


def test_the_console_is_off_unless_configured_and_on_loopback_by_example(config_path: Path) -> None:
    assert load_config(config_path).service.web is None
    config_path.write_text(CONFIG + "service:\n  web: 8025\n  web_user_header: X-Remote-User\n")
    service = load_config(config_path).service
    assert service.web is not None and (service.web.host, service.web.port) == ("127.0.0.1", 8025)
    assert service.web_user_header == "X-Remote-User"


def test_a_bad_service_web_setting_is_reported_with_its_position(config_path: Path) -> None:
    config_path.write_text(CONFIG + "service:\n  web: 'localhost:99999'\n  web_user_header: 'X User'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_path)
    messages = [str(problem) for problem in caught.value.problems]
    assert any(":5:8: web must be HOST:PORT" in m for m in messages), messages
    assert any(":6:20: web_user_header must be a header name" in m for m in messages), messages
