"""A mailbox pointed at the wrong port or security mode is explained, against the real Dovecot.

IMAP at POP3's port names the POP3 greeting at once (not a 30 s "no answer"), POP3 at IMAP's port
the IMAP one, and ``security: tls`` at a port without TLS says so and what to try instead. The
SMTP side of the same mistakes is in tests/outgoing/test_outgoing_port_mismatch.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot

from connectors.base import Connector, ConnectorError
from connectors.port_mismatch import foreign_greeting, greeting_protocol
from connectors.registry import make_connector

User = tuple[str, str]
SLOW = 20  # the timeout: every explanation here must come from what the server said, not from it


def connector(kind: str, dovecot: Dovecot, user: User, port: int, security: str, **extra: Any) -> Connector:
    """An IMAP or POP3 connector for ``user`` at ``port`` with ``security``, trusting the test CA."""
    raw = {"type": kind, "host": dovecot.host, "port": port, "security": security, "timeout": SLOW}
    raw |= {"username": user[0], "password": user[1], "ca_file": str(dovecot.ca_cert), **extra}
    return make_connector("helpdesk", raw, Path("."))


def refusal(made: Connector) -> str:
    """The ConnectorError's message when connecting."""
    with pytest.raises(ConnectorError) as caught:
        asyncio.run(asyncio.wait_for(made.connect(), SLOW / 2))  # well before the timeout
    asyncio.run(made.close())
    return str(caught.value)


def test_imap_at_the_pop3_port_says_it_got_a_pop3_greeting(dovecot: Dovecot, mailbox_user: User) -> None:
    message = refusal(connector("imap", dovecot, mailbox_user, dovecot.pop3_port, "plain"))
    assert "'helpdesk'" in message
    assert "got a POP3 greeting ('+OK" in message
    assert "not IMAP: this port speaks POP3; IMAP listens on 993 with TLS, 143 without" in message


def test_pop3_at_the_imap_port_says_it_got_an_imap_greeting(dovecot: Dovecot, mailbox_user: User) -> None:
    message = refusal(connector("pop3", dovecot, mailbox_user, dovecot.imap_port, "plain"))
    assert "got an IMAP greeting ('* OK" in message
    assert "this port speaks IMAP; POP3 listens on 995 with TLS, 110 without" in message


def test_imap_with_tls_at_the_plain_port_says_the_server_does_not_speak_tls(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    message = refusal(connector("imap", dovecot, mailbox_user, dovecot.imap_port, "tls"))
    assert "the server does not speak TLS on this port: try `security: starttls` or `plain`" in message


def test_pop3_with_tls_at_the_plain_port_says_the_server_does_not_speak_tls(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    message = refusal(connector("pop3", dovecot, mailbox_user, dovecot.pop3_port, "tls"))
    assert "the server does not speak TLS on this port: try `security: stls` or `plain`" in message


@pytest.mark.parametrize(("kind", "port_name"), [("imap", "imaps_port"), ("pop3", "pop3s_port")])
def test_plain_text_at_a_tls_port_says_to_use_security_tls(
    dovecot: Dovecot, mailbox_user: User, kind: str, port_name: str
) -> None:
    """The server waits for a TLS hello and says nothing: when the wait runs out, the error says why."""
    made = connector(kind, dovecot, mailbox_user, getattr(dovecot, port_name), "plain", timeout=1)
    with pytest.raises(ConnectorError) as caught:
        asyncio.run(made.connect())
    asyncio.run(made.close())
    assert "no greeting within 1 s: if this port expects TLS from the start" in str(caught.value)
    assert "use `security: tls`" in str(caught.value)


def test_greetings_are_told_apart_by_their_first_line() -> None:
    assert greeting_protocol(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.") == "IMAP"
    assert greeting_protocol(b"+OK Dovecot ready.") == "POP3"
    assert greeting_protocol(b"220 mx.example.com ESMTP Postfix") == "SMTP"
    assert greeting_protocol(b"SSH-2.0-OpenSSH_9.6") == "SSH"
    assert greeting_protocol(b"\x16\x03\x01") is None
    assert foreign_greeting("IMAP", b"* OK ready") is None
    assert foreign_greeting("SMTP", b"220-mx.example.com ESMTP") is None
    assert "got an SMTP greeting ('220 mx ESMTP')" in str(foreign_greeting("POP3", b"220 mx ESMTP\r"))
