"""The EWS connector against a loopback server speaking EWS SOAP over HTTPS (tests/servers/ews_server.py).

exchangelib runs unpatched: every request it makes is a real SOAP request answered by the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.entra import Authority
from servers.ews_server import EwsMailbox, EwsServer
from servers.tls import TestCertificates, make_test_certificates

from connectors.base import AuthenticationError, Connector, ConnectorError
from connectors.registry import build_settings, make_connector
from connectors.testing import ConnectorConformance, make_message, message_id

EMAIL = "helpdesk@example.com"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    """A throwaway CA and a localhost certificate for the module's servers."""
    return make_test_certificates(tmp_path_factory.mktemp("ews-tls"))


@pytest.fixture
def mailbox() -> EwsMailbox:
    """An empty mailbox."""
    return EwsMailbox(EMAIL)


@pytest.fixture
def server(mailbox: EwsMailbox, certs: TestCertificates) -> Iterator[EwsServer]:
    """The mailbox served over HTTPS with basic authentication."""
    with EwsServer(mailbox, certs=certs) as running:
        yield running


def ews(server: EwsServer, certs: TestCertificates, **overrides: Any) -> Connector:
    """A connector for the test mailbox, built from a config mapping as the service does."""
    raw = {
        "type": "ews",
        "service_endpoint": server.url,
        "email": EMAIL,
        "auth": "basic",
        "username": server.username,
        "password": server.password,
        "ca_file": str(certs.ca_cert),
        "page_size": 2,
    }
    return make_connector("helpdesk", {**raw, **overrides}, Path("."))


def run(connector: Connector, *steps: str) -> list[Any]:
    """Connect, run ``list``, ``fetch-all`` or ``ack-all`` in order, close; returns each step's result."""

    async def scenario() -> list[Any]:
        results: list[Any] = []
        await connector.connect()
        try:
            for step in steps:
                refs = await connector.list_waiting()
                if step == "list":
                    results.append(refs)
                elif step == "fetch-all":
                    results.append([await connector.fetch(ref) for ref in refs])
                elif step == "ack-all":
                    for ref in refs:
                        await connector.acknowledge(ref)
        finally:
            await connector.close()
        return results

    return asyncio.run(scenario())


class TestEwsConnector(ConnectorConformance):
    """The conformance suite over EWS (HTTPS, private CA, basic auth, pages of two items)."""

    @pytest.fixture(autouse=True)
    def _server(self, server: EwsServer, mailbox: EwsMailbox, certs: TestCertificates) -> None:
        self.server, self.mailbox, self.certs = server, mailbox, certs

    def make_connector(self) -> Connector:
        """A connector on the test server's inbox."""
        return ews(self.server, self.certs)

    def deliver(self, raw: bytes) -> None:
        """Deliver into the inbox."""
        self.mailbox.deliver(raw)

    def remaining(self) -> int:
        """Messages left in the inbox."""
        return len(self.mailbox.messages())


def test_more_messages_than_a_page_are_all_listed_oldest_first(
    server: EwsServer, certs: TestCertificates
) -> None:
    """Five messages with pages of two take three FindItem requests and come back in received order."""
    sent = [make_message(f"paged {n}") for n in range(5)]
    for raw in sent:
        server.mailbox.deliver(raw)

    (fetched,) = run(ews(server, certs), "fetch-all")

    assert [message_id(raw) for raw in fetched] == [message_id(raw) for raw in sent]
    assert server.operations.count("FindItem") == 3


def test_the_first_request_is_exchangelibs_version_probe(server: EwsServer, certs: TestCertificates) -> None:
    """exchangelib learns the server version from a ConvertId probe, then resolves the inbox."""
    run(ews(server, certs))

    assert server.operations[:3] == ["ConvertId", "GetFolder", "GetFolder"]


def test_a_wrong_password_is_an_authentication_error(server: EwsServer, certs: TestCertificates) -> None:
    """The server's 401 becomes AuthenticationError, which the service reports on the account."""
    with pytest.raises(AuthenticationError, match="refused"):
        run(ews(server, certs, password="wrong"))


def test_a_server_whose_ca_is_not_trusted_is_refused(server: EwsServer, certs: TestCertificates) -> None:
    """Without ca_file the throwaway CA is unknown: the TLS failure is a ConnectorError, nothing is read."""
    with pytest.raises(ConnectorError, match="CERTIFICATE_VERIFY_FAILED"):
        run(ews(server, certs, ca_file=None))
    assert server.operations == []


def test_acknowledged_messages_move_to_the_processed_folder(
    server: EwsServer, certs: TestCertificates
) -> None:
    """With folder and processed_folder, messages are read from one and moved to the other."""
    mailbox = server.mailbox
    mailbox.deliver(make_message("in the inbox"))
    raw = make_message("for the helpdesk")
    mailbox.deliver(raw, "Inbox/helpdesk")
    mailbox.folder("Archive/helpdesk done")
    connector = ews(server, certs, folder="Inbox/helpdesk", processed_folder="Archive/helpdesk done")

    run(connector, "ack-all")

    assert mailbox.messages("Inbox/helpdesk") == []
    assert mailbox.messages("Archive/helpdesk done") == [raw]
    assert len(mailbox.messages()) == 1


@pytest.mark.parametrize(
    ("delete", "where"), [("trash", "deleteditems"), ("soft", "recoverableitemsroot"), ("hard", None)]
)
def test_delete_goes_where_the_setting_says(
    server: EwsServer, certs: TestCertificates, delete: str, where: str | None
) -> None:
    """trash (default) moves to Deleted Items, soft to the recoverable items, hard purges."""
    raw = make_message("to delete")
    server.mailbox.deliver(raw)
    overrides = {} if delete == "trash" else {"delete": delete}

    run(ews(server, certs, **overrides), "ack-all")

    left = [
        (server.mailbox.folders[item.folder].distinguished, item.mime)
        for item in server.mailbox.items.values()
    ]
    assert left == ([] if where is None else [(where, raw)])


def test_a_missing_folder_is_reported_by_name(server: EwsServer, certs: TestCertificates) -> None:
    """A folder path that does not exist fails connect with its name."""
    with pytest.raises(ConnectorError, match="no folder 'Inbox/nowhere'"):
        run(ews(server, certs, folder="Inbox/nowhere"))


def test_a_busy_server_is_a_connector_error_and_the_next_pass_works(
    server: EwsServer, certs: TestCertificates
) -> None:
    """ErrorServerBusy raises ConnectorError (the service backs off); the next pass reads normally."""
    server.mailbox.deliver(make_message("patience"))
    server.busy["FindItem"] = 1
    with pytest.raises(ConnectorError, match="ErrorServerBusy") as refused:
        run(ews(server, certs), "list")
    assert not isinstance(refused.value, AuthenticationError)

    (refs,) = run(ews(server, certs), "list")
    assert len(refs) == 1


def test_oauth_client_credentials_get_a_token_and_impersonate_the_mailbox(
    mailbox: EwsMailbox, certs: TestCertificates
) -> None:
    """auth: oauth asks the authority for a token (client credentials) and sends it as a bearer."""
    authority = Authority()
    raw = make_message("via oauth")
    mailbox.deliver(raw)
    with EwsServer(mailbox, certs=certs, authority=authority) as server:
        authority.base_url = server.base_url
        overrides = {"auth": "oauth", "username": None, "password": None, "authority_url": server.base_url}
        overrides |= {"client_id": authority.client_id, "client_secret": authority.client_secret}
        (fetched,) = run(ews(server, certs, tenant_id=authority.tenant, **overrides), "fetch-all")

    assert fetched == [raw]
    assert [r["grant_type"] for r in authority.token_requests] == ["client_credentials"]
    assert authority.token_requests[0]["scope"] == "https://outlook.office365.com/.default"
    assert b"<t:ExchangeImpersonation>" in server.requests[-1]


def test_settings_mistakes_are_reported_for_the_admin() -> None:
    """Missing credentials and a bad endpoint are config mistakes, not connect failures."""
    _, mistakes = build_settings(
        "ews", {"type": "ews", "service_endpoint": "mail.example.com", "email": EMAIL}
    )
    assert "full EWS URL" in mistakes[0][1]
    base = {"type": "ews", "service_endpoint": "https://mail.example.com/EWS/Exchange.asmx", "email": EMAIL}
    _, mistakes = build_settings("ews", base)
    assert "auth ntlm needs username and password" in mistakes[0][1]
    _, mistakes = build_settings("ews", {**base, "auth": "oauth", "client_id": "x"})
    assert "tenant_id and client_secret" in mistakes[0][1]
