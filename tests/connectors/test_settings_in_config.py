"""An account's ``connector:`` settings are checked by the config loader against the connector's dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.model import load_config
from engine.errors import ConfigError


def write_config(folder: Path, text: str) -> Path:
    """Write ``mailgate.yaml`` into ``folder`` and return its path."""
    path = folder / "mailgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_number_from_the_environment_is_read_as_a_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``port: ${POP3_PORT}`` gives the whole number the setting wants, not the text."""
    monkeypatch.setenv("MAILGATE_TEST_POP3_PORT", "995")
    monkeypatch.setenv("MAILGATE_TEST_POP3_BATCH", " 50 ")
    path = write_config(
        tmp_path,
        "accounts:\n  - name: helpdesk\n    connector:\n      type: pop3\n      host: pop.example.com\n"
        "      username: desk\n      password: s3cret\n      port: ${MAILGATE_TEST_POP3_PORT}\n"
        "      max_messages_per_session: ${MAILGATE_TEST_POP3_BATCH}\n",
    )
    connector = load_config(path).accounts[0].connector
    assert (connector["port"], connector["max_messages_per_session"]) == (995, 50)


def test_text_from_the_environment_that_is_no_number_is_refused_at_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable holding the wrong kind of value is a mistake at the key that uses it."""
    monkeypatch.setenv("MAILGATE_TEST_POP3_PORT", "pop3s")
    path = write_config(
        tmp_path,
        "accounts:\n  - name: helpdesk\n    connector:\n      type: pop3\n      host: pop.example.com\n"
        "      username: desk\n      password: s3cret\n      port: ${MAILGATE_TEST_POP3_PORT}\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert [(p.line, p.col, p.message) for p in refused.value.problems] == [
        (8, 13, "connector 'pop3': port must be a whole number, not 'pop3s'")
    ]


def test_the_folder_connector_needs_nothing_but_its_name(tmp_path: Path) -> None:
    """``connector: folder`` (and no connector at all) is valid: it reads ``mailbox`` beside the config."""
    path = write_config(tmp_path, "accounts:\n  - {name: a, connector: folder}\n  - {name: b}\n")
    assert [a.connector for a in load_config(path).accounts] == [{"type": "folder"}, {"type": "folder"}]
