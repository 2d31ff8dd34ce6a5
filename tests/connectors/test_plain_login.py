"""IMAP and POP3 never send a password (or token) unencrypted to another machine unless the account
says ``allow_plain_login: true``; to this machine (loopback) plain login works as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot

from connectors.credentials import is_loopback
from connectors.registry import build_settings, make_connector
from connectors.testing import make_message
from engine.config.model import load_config
from engine.errors import ConfigError, MailgateError

PASSWORD = {"username": "desk", "password": "s3cret"}
TOKEN = {"username": "desk", "auth": "xoauth2", "oauth_token": "ya29.token"}
# (connector type, its encrypted choices as the message names them)
PROTOCOLS = [("imap", "tls or starttls"), ("pop3", "tls or stls")]


def _mistakes(kind: str, **settings: Any) -> list[str]:
    _, mistakes = build_settings(kind, {"type": kind, **settings})
    return [message for _, message in mistakes]


@pytest.mark.parametrize(("kind", "encrypted"), PROTOCOLS)
@pytest.mark.parametrize(("credentials", "secret"), [(PASSWORD, "password"), (TOKEN, "token")])
def test_plain_login_to_another_machine_is_refused_saying_how_to_fix_it(
    kind: str, encrypted: str, credentials: dict[str, str], secret: str
) -> None:
    [message] = _mistakes(kind, host="mail.example.com", security="plain", **credentials)
    assert message == (
        f"connector {kind!r}: logging in to mail.example.com over a plain connection would send the "
        f"{secret} unencrypted; use security: {encrypted}, or set allow_plain_login: true if the "
        "network to the server is trusted"
    )


@pytest.mark.parametrize(("kind", "encrypted"), PROTOCOLS)
def test_plain_login_to_another_machine_is_refused_before_any_connection(kind: str, encrypted: str) -> None:
    raw = {"type": kind, "host": "10.1.2.3", "port": 1, "security": "plain", **PASSWORD}
    with pytest.raises(MailgateError, match="allow_plain_login: true"):
        make_connector("helpdesk", raw, Path("."))


@pytest.mark.parametrize(("kind", "encrypted"), PROTOCOLS)
def test_allow_plain_login_accepts_plain_login_to_another_machine(kind: str, encrypted: str) -> None:
    assert _mistakes(kind, host="10.1.2.3", security="plain", allow_plain_login=True, **PASSWORD) == []


@pytest.mark.parametrize(("kind", "stls"), [("imap", "starttls"), ("pop3", "stls")])
def test_encrypted_connections_need_no_flag(kind: str, stls: str) -> None:
    for security in ("tls", stls):
        assert _mistakes(kind, host="mail.example.com", security=security, **PASSWORD) == []


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts_may_log_in_plain_without_the_flag(host: str) -> None:
    assert is_loopback(host)
    for kind, _ in PROTOCOLS:
        assert _mistakes(kind, host=host, security="plain", **PASSWORD) == []


@pytest.mark.parametrize(
    "host", ["mail.example.com", "10.0.0.5", "192.168.1.1", "::2", "localhost.evil.example"]
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_the_config_refuses_plain_login_at_the_accounts_connector(tmp_path: Path) -> None:
    path = tmp_path / "mailgate.yaml"
    path.write_text(
        "accounts:\n  - name: helpdesk\n    connector:\n      type: imap\n      host: imap.example.com\n"
        "      security: plain\n      username: desk\n      password: s3cret\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    [problem] = refused.value.problems
    assert (problem.line, problem.col) == (4, 7)  # the connector mapping's first key
    assert "allow_plain_login: true" in problem.message
    path.write_text(path.read_text(encoding="utf-8") + "      allow_plain_login: true\n", encoding="utf-8")
    assert load_config(path).accounts[0].connector["allow_plain_login"] is True


@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_plain_login_to_a_loopback_server_still_works_without_the_flag(
    dovecot: Dovecot, mailbox_user: tuple[str, str], kind: str
) -> None:
    """The real Dovecot on 127.0.0.1: log in over the plain port and read the waiting message."""
    name, password = mailbox_user
    dovecot.append(name, make_message("plain on loopback"))
    port = dovecot.imap_port if kind == "imap" else dovecot.pop3_port
    raw = {"type": kind, "host": dovecot.host, "port": port, "security": "plain"}
    connector = make_connector("helpdesk", raw | {"username": name, "password": password}, Path("."))

    async def count_waiting() -> int:
        await connector.connect()
        try:
            return len(await connector.list_waiting())
        finally:
            await connector.close()

    assert dovecot.host == "127.0.0.1"
    assert asyncio.run(count_waiting()) == 1
