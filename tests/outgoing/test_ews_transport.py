"""The EWS outgoing transport against the loopback EWS server over HTTPS (tests/servers/ews_server.py).

exchangelib runs unpatched: each send is a real CreateItem request (MimeContent, SendAndSaveCopy)
answered by the server, which keeps what it was given byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from outgoing_desk import DESK_ADDRESS, T0, MakeDesk
from servers.entra import Authority
from servers.ews_server import EwsMailbox, EwsServer
from servers.tls import TestCertificates
from test_outgoing_docs import section, table_keys

from connectors.base import Envelope, SendError
from connectors.ews.send import EwsTransport, EwsTransportSettings
from connectors.registry import build_transport_settings, make_transport
from engine.config.outgoing import OutgoingServer
from engine.outgoing.delivery import send_outbox_once

MAILBOX = "helpdesk@example.com"
REPLY = f"NoError: sent by {MAILBOX}, a copy saved in Sent Items (Exchange 15.1.2507.6)"


@pytest.fixture
def server(certs: TestCertificates) -> Iterator[EwsServer]:
    """An empty mailbox served over HTTPS (the session's throwaway CA) with basic authentication."""
    with EwsServer(EwsMailbox(MAILBOX), certs=certs) as running:
        yield running


def keys(server: EwsServer, certs: TestCertificates, **overrides: Any) -> dict[str, Any]:
    """The keys of an ``outgoing.servers`` entry of type ews for the test server."""
    raw = {
        "type": "ews",
        "service_endpoint": server.url,
        "email": MAILBOX,
        "auth": "basic",
        "username": server.username,
        "password": server.password,
        "ca_file": str(certs.ca_cert),
        "timeout": 10,
    }
    return {**raw, **overrides}


def transport(server: EwsServer, certs: TestCertificates, **overrides: Any) -> EwsTransport:
    """A transport made from an ``outgoing.servers`` entry, through the registry."""
    settings = {"name": "exchange", **keys(server, certs, **overrides)}
    made = make_transport(OutgoingServer(name="exchange", type="ews", settings=settings), Path("."))
    assert isinstance(made, EwsTransport)
    return made


def mail(subject: str, sender: str = MAILBOX, to: str = "ada@example.com", body: bytes = b"Hello") -> bytes:
    """A small MIME message with UTF-8 quoted-printable text and CRLF line ends."""
    return (
        (
            f"From: =?utf-8?q?D=C3=A9sk?= <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@desk.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        + body
        + b" =C3=A9t=C3=A9\r\n"
    )


def envelope(data: bytes, to: str = "ada@example.com") -> Envelope:
    """The envelope the delivery hands over."""
    return Envelope(MAILBOX, to, data, "<x@desk.example>")


def send_all(sender: EwsTransport, *envelopes: Envelope) -> list[str | SendError]:
    """Send each envelope in one session; the replies, or the SendError raised."""

    async def scenario() -> list[str | SendError]:
        results: list[str | SendError] = []
        for each in envelopes:
            try:
                results.append(await sender.send(each))
            except SendError as exc:
                results.append(exc)
        await sender.close()
        return results

    return asyncio.run(scenario())


def test_messages_are_sent_with_their_exact_bytes_and_a_copy_is_kept_in_sent_items(
    server: EwsServer, certs: TestCertificates
) -> None:
    """CreateItem SendAndSaveCopy carries the MIME bytes unchanged; one session serves both messages."""
    first, second = mail("first"), mail("second", body=b"Line one\r\nLine two")

    replies = send_all(transport(server, certs), envelope(first), envelope(second))

    assert replies == [REPLY, REPLY]
    assert server.mailbox.sent == [first, second]
    assert server.mailbox.messages("Sent Items") == [first, second]
    assert server.operations == ["ConvertId", "GetFolder", "GetFolder", "CreateItem", "CreateItem"]
    assert b'MessageDisposition="SendAndSaveCopy"' in server.requests[-1]
    assert b"<t:IsRead>1</t:IsRead>" in server.requests[-1]


def test_a_wrong_password_is_a_server_failure_naming_the_login(
    server: EwsServer, certs: TestCertificates
) -> None:
    """The server's 401 defers the message (connection failure, not permanent) and says whose login."""
    [refused] = send_all(transport(server, certs, password="wrong"), envelope(mail("hello")))

    assert isinstance(refused, SendError)
    assert refused.connection and not refused.permanent
    assert "EWS refused the login of CONTOSO\\helpdesk for helpdesk@example.com" in str(refused)
    assert server.mailbox.sent == []


def test_a_message_exchange_refuses_fails_for_good_and_the_next_one_is_sent(
    server: EwsServer, certs: TestCertificates
) -> None:
    """ErrorMessageSizeExceeded is permanent; the session stays usable for the next message."""
    server.mailbox.max_send_size = 2000
    large, small = mail("large", body=b"x" * 3000), mail("small")

    refused, sent = send_all(transport(server, certs), envelope(large), envelope(small))

    assert isinstance(refused, SendError) and refused.permanent and not refused.connection
    assert "ErrorMessageSizeExceeded: The message exceeds the maximum supported size." in str(refused)
    assert sent == REPLY
    assert server.mailbox.sent == [small]
    assert server.operations.count("ConvertId") == 1


def test_an_envelope_recipient_missing_from_the_headers_is_refused_before_exchange_is_asked(
    server: EwsServer, certs: TestCertificates
) -> None:
    """Exchange sends to the To/Cc/Bcc headers, so another envelope recipient is a permanent refusal."""
    [refused] = send_all(transport(server, certs), envelope(mail("hello"), to="bob@example.com"))

    assert isinstance(refused, SendError) and refused.permanent
    assert "bob@example.com is not there" in str(refused)
    assert server.operations == []


def test_a_from_the_mailbox_may_not_send_as_is_deferred_with_a_hint(
    server: EwsServer, certs: TestCertificates
) -> None:
    """ErrorSendAsDenied is a matter of rights, not of the message: tried again, never failed at once."""
    data = mail("hello", sender="noreply@example.com")
    [refused] = send_all(transport(server, certs), envelope(data))
    assert isinstance(refused, SendError) and not refused.permanent and not refused.connection
    assert "ErrorSendAsDenied" in str(refused) and "Send As rights" in str(refused)

    server.mailbox.send_as.add("noreply@example.com")
    assert send_all(transport(server, certs), envelope(data)) == [REPLY]


def test_oauth_client_credentials_impersonate_the_mailbox_to_send(
    certs: TestCertificates,
) -> None:
    """auth: oauth gets a token by client credentials and sends as the mailbox by impersonation."""
    authority = Authority()
    with EwsServer(EwsMailbox(MAILBOX), certs=certs, authority=authority) as server:
        authority.base_url = server.base_url
        oauth = {"auth": "oauth", "username": None, "password": None, "authority_url": server.base_url}
        oauth |= {"client_id": authority.client_id, "client_secret": authority.client_secret}
        replies = send_all(
            transport(server, certs, tenant_id=authority.tenant, **oauth), envelope(mail("hi"))
        )

    assert replies == [REPLY]
    assert [r["grant_type"] for r in authority.token_requests] == ["client_credentials"]
    assert b"<t:ExchangeImpersonation>" in server.requests[-1]


def test_a_missing_ca_file_is_a_server_failure(server: EwsServer, certs: TestCertificates) -> None:
    """A ca_file that is not there defers the message without asking the server."""
    [refused] = send_all(transport(server, certs, ca_file="nowhere/ca.pem"), envelope(mail("hello")))

    assert isinstance(refused, SendError) and refused.connection
    assert "ca.pem does not exist" in str(refused)
    assert server.operations == []


def test_ews_settings_mistakes_are_reported_for_the_admin() -> None:
    """Missing credentials, no mailbox and a bare host name are config mistakes."""
    base = {"name": "exchange", "service_endpoint": "https://mail.example.com/EWS/Exchange.asmx"}
    _, mistakes = build_transport_settings("ews", {**base, "email": MAILBOX})
    assert "auth ntlm needs username and password" in mistakes[0][1]
    _, mistakes = build_transport_settings("ews", {**base, "username": "u", "password": "p"})
    assert "needs email" in mistakes[0][1]
    _, mistakes = build_transport_settings("ews", {**base, "service_endpoint": "mail.example.com"})
    assert "full EWS URL" in mistakes[0][1]
    settings, _ = build_transport_settings(
        "ews", {**base, "from_address": MAILBOX, "username": "u", "password": "p"}
    )
    assert settings is not None and settings.type == "ews"


# --- through the outbox: a config with an outgoing server of type ews -----------------------------


def desk_keys(server: EwsServer, certs: TestCertificates) -> dict[str, Any]:
    """An ews outgoing server sending from the desk's own mailbox."""
    server.mailbox.email = DESK_ADDRESS
    return keys(server, certs, email=DESK_ADDRESS)


def test_a_queued_reply_is_sent_through_an_outgoing_server_of_type_ews(
    server: EwsServer, certs: TestCertificates, make_desk: MakeDesk
) -> None:
    """``outgoing.servers: [{type: ews, ...}]``: send_outbox_once marks the reply sent; Exchange holds it."""
    desk = make_desk(desk_keys(server, certs))
    assert isinstance(make_transport(desk.runtime.config.outgoing.servers[0], desk.folder), EwsTransport)
    desk.deliver("Printer on fire")

    report = send_outbox_once(desk.runtime)

    [row] = desk.rows()
    assert [d.status for d in report.deliveries] == ["sent"]
    assert (row.status, row.sent_via) == ("sent", "main")
    assert row.server_reply == REPLY.replace(MAILBOX, DESK_ADDRESS)
    [sent] = server.mailbox.sent
    assert server.mailbox.messages("Sent Items") == [sent]
    message = message_from_bytes(sent)
    assert (message["Message-ID"], message["To"]) == (f"<{row.message_id}>", "ada@example.com")
    assert message["Subject"].startswith("[CALL#")


def test_a_busy_exchange_defers_the_reply_and_a_later_drain_sends_it(
    server: EwsServer, certs: TestCertificates, make_desk: MakeDesk
) -> None:
    """ErrorServerBusy is transient: the reply is deferred with Exchange's words, then delivered."""
    desk = make_desk(desk_keys(server, certs))
    desk.deliver("Printer on fire")
    server.busy["CreateItem"] = 1

    desk.drain(T0)
    [row] = desk.rows()
    assert row.status == "deferred"
    assert "ErrorServerBusy" in (row.last_error or "")
    assert server.mailbox.sent == []

    desk.drain(T0 + timedelta(hours=2))
    [row] = desk.rows()
    assert row.status == "sent"
    assert len(server.mailbox.sent) == 1


def test_the_ews_section_of_the_outgoing_doc_lists_every_key() -> None:
    """docs/outgoing.md's EWS key table names exactly the fields of EwsTransportSettings."""
    documented = table_keys(section("Exchange Server (EWS)"))
    assert set(documented) == {f.name for f in dataclasses.fields(EwsTransportSettings)}
    assert documented["timeout"] == f"`{EwsTransportSettings.timeout}`"
