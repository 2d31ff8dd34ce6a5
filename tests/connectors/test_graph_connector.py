"""The Graph connector against a loopback Graph + Entra authority over HTTPS (tests/servers/graph_server.py).

msal and httpx run unpatched: msal fetches the authority's discovery document and tokens from the
loopback authority, httpx makes the Graph calls; the server counts what it was asked.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.entra import CLIENT_ID, CLIENT_SECRET, TENANT
from servers.graph_server import GraphMailbox, GraphServer
from servers.tls import TestCertificates, make_test_certificates

from connectors.base import AuthenticationError, Connector, ConnectorError, Envelope, SendError
from connectors.graph.send import GraphTransport, GraphTransportSettings
from connectors.registry import build_settings, make_connector
from connectors.testing import ConnectorConformance, make_message, message_id
from engine.config.params import build_from_params

UPN = "helpdesk@contoso.example"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    """A throwaway CA and a localhost certificate for the module's servers."""
    return make_test_certificates(tmp_path_factory.mktemp("graph-tls"))


@pytest.fixture
def server(certs: TestCertificates) -> Iterator[GraphServer]:
    """Graph and the authority for one empty mailbox."""
    with GraphServer(GraphMailbox(UPN), certs) as running:
        yield running


def graph(server: GraphServer, certs: TestCertificates, **overrides: Any) -> Connector:
    """A connector for the test mailbox, built from a config mapping as the service does."""
    raw = {
        "type": "graph",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "mailbox": UPN,
        "graph_url": server.graph_url,
        "authority_url": server.base_url,
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


class TestGraphConnector(ConnectorConformance):
    """The conformance suite over Graph (pages of two messages)."""

    @pytest.fixture(autouse=True)
    def _server(self, server: GraphServer, certs: TestCertificates) -> None:
        self.server, self.certs = server, certs

    def make_connector(self) -> Connector:
        """A connector on the test mailbox's inbox."""
        return graph(self.server, self.certs)

    def deliver(self, raw: bytes) -> None:
        """Deliver into the inbox."""
        self.server.mailbox.deliver(raw)

    def remaining(self) -> int:
        """Messages left in the inbox."""
        return len(self.server.mailbox.in_folder())


def test_more_messages_than_a_page_follow_the_next_links(
    server: GraphServer, certs: TestCertificates
) -> None:
    """Five messages with pages of two take three list calls and come back oldest first."""
    sent = [make_message(f"paged {n}") for n in range(5)]
    for raw in sent:
        server.mailbox.deliver(raw)

    (fetched,) = run(graph(server, certs), "fetch-all")

    assert [message_id(raw) for raw in fetched] == [message_id(raw) for raw in sent]
    assert server.calls("GET", "/messages") - server.calls("GET", "/$value") == 3


def test_acknowledged_messages_move_to_the_processed_folder(
    server: GraphServer, certs: TestCertificates
) -> None:
    """With processed_folder (a folder id), acknowledgement moves instead of deleting."""
    done = server.mailbox.add_folder("helpdesk done")
    raw = make_message("to file")
    server.mailbox.deliver(raw)

    run(graph(server, certs, processed_folder=done.id), "ack-all")

    assert server.mailbox.in_folder() == []
    assert server.mailbox.in_folder(done.id) == [raw]
    assert server.mailbox.in_folder("deleteditems") == []


@pytest.mark.parametrize(
    ("delete", "trash", "recoverable"), [("trash", 1, 0), ("soft", 0, 1), ("hard", 0, 0)]
)
def test_delete_goes_where_the_setting_says(
    server: GraphServer, certs: TestCertificates, delete: str, trash: int, recoverable: int
) -> None:
    """trash (default) moves to Deleted Items, soft is Graph's DELETE, hard is permanentDelete."""
    server.mailbox.deliver(make_message("to delete"))
    overrides = {} if delete == "trash" else {"delete": delete}

    run(graph(server, certs, **overrides), "ack-all")

    assert server.mailbox.in_folder() == []
    assert len(server.mailbox.in_folder("deleteditems")) == trash
    assert len(server.mailbox.deleted) == recoverable


def test_a_429_with_retry_after_is_waited_out_and_retried(
    server: GraphServer, certs: TestCertificates
) -> None:
    """Throttled once (429, Retry-After: 1) while listing: the same call is retried and succeeds."""
    server.mailbox.deliver(make_message("throttled"))
    connector = graph(server, certs)

    async def scenario() -> int:
        await connector.connect()
        server.fail_next.append((429, "1", "ApplicationThrottled"))
        refs = await connector.list_waiting()
        await connector.close()
        return len(refs)

    assert asyncio.run(scenario()) == 1
    assert server.calls("GET", "/inbox/messages") == 2


def test_a_503_with_retry_after_is_retried_on_fetch(server: GraphServer, certs: TestCertificates) -> None:
    """Service unavailable once (503, Retry-After: 1) while fetching: retried, the bytes arrive."""
    raw = make_message("unavailable")
    server.mailbox.deliver(raw)
    connector = graph(server, certs)

    async def scenario() -> bytes:
        await connector.connect()
        (ref,) = await connector.list_waiting()
        server.fail_next.append((503, "1", "ServiceUnavailable"))
        fetched = await connector.fetch(ref)
        await connector.close()
        return fetched

    assert asyncio.run(scenario()) == raw
    assert server.calls("GET", "/$value") == 2


def test_a_long_retry_after_is_left_to_the_service(server: GraphServer, certs: TestCertificates) -> None:
    """Asked to wait longer than the bound, the connector raises at once instead of sleeping."""
    server.fail_next.append((429, "3600", "ApplicationThrottled"))
    with pytest.raises(ConnectorError, match="asked to wait 3600 s") as raised:
        run(graph(server, certs))
    assert not isinstance(raised.value, AuthenticationError)
    assert server.calls("GET") == 1


def test_a_token_close_to_expiry_is_renewed_before_use(server: GraphServer, certs: TestCertificates) -> None:
    """A token with under five minutes left is replaced: the next call asks the authority again."""
    server.authority.expires_in = 120
    run(graph(server, certs), "list")

    assert len(server.authority.token_requests) == 2
    tokens_used = [token for _, _, token in server.requests]
    assert tokens_used[0] == server.authority.issued[0]
    assert tokens_used[-1] == server.authority.issued[1]


def test_a_fresh_token_is_reused(server: GraphServer, certs: TestCertificates) -> None:
    """A token valid for an hour serves every call of the session: one token request."""
    server.mailbox.deliver(make_message("one"))
    run(graph(server, certs), "fetch-all", "ack-all")

    assert len(server.authority.token_requests) == 1


def test_a_token_graph_rejects_is_replaced_once(server: GraphServer, certs: TestCertificates) -> None:
    """A 401 from Graph (token no longer accepted) gets one new token and the call goes through."""
    server.mailbox.deliver(make_message("after rotation"))
    connector = graph(server, certs)

    async def scenario() -> int:
        await connector.connect()
        server.authority.issued.clear()  # every token issued so far is now refused
        refs = await connector.list_waiting()
        await connector.close()
        return len(refs)

    assert asyncio.run(scenario()) == 1
    assert len(server.authority.token_requests) == 2


def test_revoked_consent_is_an_authentication_error_with_entras_description(
    server: GraphServer, certs: TestCertificates
) -> None:
    """The authority's refusal (AADSTS700016) is raised as AuthenticationError with its description."""
    server.authority.revoke_consent()
    with pytest.raises(
        AuthenticationError, match="unauthorized_client: AADSTS700016: Application with identifier"
    ):
        run(graph(server, certs))
    assert server.requests == []


def test_an_authority_outage_is_a_connector_error(server: GraphServer, certs: TestCertificates) -> None:
    """A 503 or temporarily_unavailable from the token endpoint is retried by the service, not "refused"."""
    description = "AADSTS90033: A transient error has occurred. Please try again."
    for status, match in ((503, "HTTP Error: 503"), (400, "temporarily_unavailable: AADSTS90033")):
        server.authority.refusal = (
            status,
            {"error": "temporarily_unavailable", "error_description": description},
        )
        with pytest.raises(ConnectorError, match=match) as raised:
            run(graph(server, certs))
        assert not isinstance(raised.value, AuthenticationError)


def test_a_wrong_secret_is_an_authentication_error(server: GraphServer, certs: TestCertificates) -> None:
    """invalid_client from the token endpoint is an AuthenticationError naming AADSTS7000215."""
    with pytest.raises(AuthenticationError, match="invalid_client: AADSTS7000215"):
        run(graph(server, certs, client_secret="wrong"))


def test_access_denied_by_graph_is_an_authentication_error(
    server: GraphServer, certs: TestCertificates
) -> None:
    """A 403 from Graph (permission missing) is reported as an AuthenticationError with Graph's code."""
    server.fail_next.append((403, None, "ErrorAccessDenied"))
    with pytest.raises(AuthenticationError, match="403 ErrorAccessDenied"):
        run(graph(server, certs))


def test_an_unknown_folder_is_reported_at_connect(server: GraphServer, certs: TestCertificates) -> None:
    """A folder that does not exist fails connect with Graph's error and the folder's name."""
    with pytest.raises(ConnectorError, match=r"ErrorItemNotFound.*folder 'helpdesk'"):
        run(graph(server, certs, folder="helpdesk"))


def test_a_certificate_credential_signs_the_token_request(
    server: GraphServer, certs: TestCertificates, tmp_path: Path
) -> None:
    """certificate_file (PEM key + certificate) makes msal send a signed client assertion, accepted."""
    pem = _rsa_key_and_certificate()
    (tmp_path / "app.pem").write_bytes(pem)
    server.authority.certificate_pem = pem
    overrides = {"client_secret": None, "certificate_file": str(tmp_path / "app.pem")}

    run(graph(server, certs, **overrides), "list")

    assert "client_assertion" in server.authority.token_requests[0]
    assert "client_secret" not in server.authority.token_requests[0]


def test_settings_mistakes_are_reported_for_the_admin() -> None:
    """Neither or both of secret and certificate, and a plain-http URL, are config mistakes."""
    base = {"type": "graph", "tenant_id": TENANT, "client_id": CLIENT_ID, "mailbox": UPN}
    _, mistakes = build_settings("graph", base)
    assert "either client_secret or certificate_file" in mistakes[0][1]
    _, mistakes = build_settings(
        "graph", {**base, "client_secret": "s", "graph_url": "http://graph.local/v1.0"}
    )
    assert "graph_url must be an https URL" in mistakes[0][1]


# --- the Graph outgoing transport (connectors/graph/send.py) ---------------------------------------


def transport(server: GraphServer, certs: TestCertificates) -> GraphTransport:
    """A Graph transport sending as the test mailbox, from an ``outgoing.servers`` entry."""
    raw = {"name": "online", "type": "graph", "tenant_id": TENANT, "client_id": CLIENT_ID}
    raw |= {"client_secret": CLIENT_SECRET, "from_address": UPN, "graph_url": server.graph_url}
    raw |= {"authority_url": server.base_url, "ca_file": str(certs.ca_cert)}
    settings, mistakes = build_from_params(GraphTransportSettings, raw, "outgoing server 'online'")
    assert settings is not None, mistakes
    return GraphTransport(settings, Path("."))


def send_all(sender: GraphTransport, *envelopes: Envelope) -> list[str | SendError]:
    """Send each envelope in one session; the replies, or the SendError raised."""

    async def scenario() -> list[str | SendError]:
        results: list[str | SendError] = []
        for envelope in envelopes:
            try:
                results.append(await sender.send(envelope))
            except SendError as exc:
                results.append(exc)
        await sender.close()
        return results

    return asyncio.run(scenario())


def test_the_graph_transport_sends_the_mime_message(server: GraphServer, certs: TestCertificates) -> None:
    """sendMail gets the exact MIME bytes (base64 as text/plain) and answers 202; one token serves both."""
    first = b"From: " + UPN.encode() + b"\r\nTo: ada@example.com\r\nSubject: one\r\n\r\nHello\r\n"
    second = first.replace(b"one", b"two")
    replies = send_all(
        transport(server, certs),
        Envelope(UPN, "ada@example.com", first, "<1@x>"),
        Envelope(UPN, "ada@example.com", second, "<2@x>"),
    )

    assert replies == ["202 Accepted (request-id 9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d)"] * 2
    assert server.mailbox.sent == [first, second]
    assert len(server.authority.token_requests) == 1


def test_the_graph_transport_reports_refusals_for_the_delivery_to_classify(
    server: GraphServer, certs: TestCertificates
) -> None:
    """A recipient missing from the headers is permanent; throttling beyond the bound is a server failure."""
    data = b"From: " + UPN.encode() + b"\r\nTo: ada@example.com\r\nSubject: x\r\n\r\nHello\r\n"
    server.fail_next.append((429, "3600", "ApplicationThrottled"))
    elsewhere, throttled = send_all(
        transport(server, certs),
        Envelope(UPN, "bob@example.com", data, "<1@x>"),
        Envelope(UPN, "ada@example.com", data, "<2@x>"),
    )

    assert isinstance(elsewhere, SendError) and elsewhere.permanent
    assert isinstance(throttled, SendError) and throttled.connection and not throttled.permanent
    assert server.mailbox.sent == []


def _rsa_key_and_certificate() -> bytes:
    """A self-signed RSA certificate and its key, as an app registration's credential."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailgate app")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


def test_an_outgoing_server_of_type_graph_sends_through_the_graph_transport(
    server: GraphServer, certs: TestCertificates
) -> None:
    """``outgoing.servers: [{type: graph, ...}]`` is found by name in the transport registry and sends."""
    from connectors.registry import make_transport, transport_names
    from engine.config.outgoing import OutgoingServer

    assert "graph" in transport_names()
    keys = {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "from_address": UPN}
    keys |= {"graph_url": server.graph_url, "authority_url": server.base_url, "ca_file": str(certs.ca_cert)}
    sender = make_transport(
        OutgoingServer(name="online", type="graph", settings={"name": "online", **keys}), Path(".")
    )
    assert isinstance(sender, GraphTransport)
    raw = b"From: " + UPN.encode() + b"\r\nTo: ada@example.com\r\nSubject: via registry\r\n\r\nHi\r\n"
    send_all(sender, Envelope(UPN, "ada@example.com", raw, "<r@x>"))
    assert server.mailbox.sent == [raw]
