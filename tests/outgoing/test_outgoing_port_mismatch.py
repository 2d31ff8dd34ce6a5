"""An outgoing server pointed at the wrong port or security mode is explained (real Dovecot, real SMTP).

The same mistakes as for mailboxes (tests/connectors/test_port_mismatch.py), from the SMTP side:
another protocol's greeting, TLS to a port that has none, plain text to a TLS port.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from outgoing_desk import StartServer
from servers.dovecot import Dovecot
from servers.tls import TestCertificates

from connectors.base import Envelope, SendError
from connectors.registry import make_transport
from engine.config.outgoing import OutgoingServer

SLOW = 20  # the timeout: the explanations of a greeting must come from what the server said


def send_error(port: int, security: str, ca_file: Path, timeout: float = SLOW) -> str:
    """The SendError's message when sending one message to 127.0.0.1:``port``."""
    settings: dict[str, Any] = {"name": "main", "host": "127.0.0.1", "port": port, "security": security}
    settings |= {"ca_file": str(ca_file), "timeout": timeout}
    transport = make_transport(OutgoingServer(name="main", settings=settings), Path("."))
    envelope = Envelope("helpdesk@example.com", "ada@example.com", b"Subject: hi\r\n\r\nhi\r\n", "<m@x>")

    async def attempt() -> None:
        try:
            await asyncio.wait_for(transport.send(envelope), SLOW / 2)
        finally:
            await transport.close()

    with pytest.raises(SendError) as caught:
        asyncio.run(attempt())
    assert caught.value.connection  # the server, not the message: the message waits
    return str(caught.value)


def test_smtp_at_a_pop3_port_says_it_got_a_pop3_greeting(dovecot: Dovecot) -> None:
    message = send_error(dovecot.pop3_port, "plain", dovecot.ca_cert)
    assert "got a POP3 greeting ('+OK" in message
    assert "this port speaks POP3; SMTP listens on 465 with TLS, 587 without" in message


def test_smtp_at_an_imap_port_says_it_got_an_imap_greeting(dovecot: Dovecot) -> None:
    message = send_error(dovecot.imap_port, "starttls", dovecot.ca_cert)
    assert "got an IMAP greeting ('* OK" in message


def test_smtp_with_tls_at_a_plain_port_says_the_server_does_not_speak_tls(
    smtp: StartServer, certs: TestCertificates
) -> None:
    server = smtp()  # plain SMTP
    message = send_error(server.port, "tls", certs.ca_cert)
    assert "the server does not speak TLS on this port: try `security: starttls` or `plain`" in message


def test_smtp_with_tls_at_dovecots_plain_port_says_the_server_does_not_speak_tls(dovecot: Dovecot) -> None:
    message = send_error(dovecot.pop3_port, "tls", dovecot.ca_cert)
    assert "the server does not speak TLS on this port: try `security: starttls` or `plain`" in message


def test_plain_smtp_at_an_implicit_tls_port_says_to_use_security_tls(
    smtp: StartServer, certs: TestCertificates
) -> None:
    server = smtp(tls="implicit")
    message = send_error(server.port, "plain", certs.ca_cert, timeout=1)
    assert "no greeting within 1 s: if this port expects TLS from the start (like 465)" in message
    assert "use `security: tls`" in message
