"""The transport conformance suite (connectors/testing_transport.py) for every built-in transport.

Each runs against its real loopback server over TLS with the session's throwaway CA: aiosmtpd for
``smtp`` (STARTTLS and a login), the Graph and Entra server for ``graph``, the EWS server for ``ews``.
Every transport is made from an ``outgoing.servers`` entry through the registry, as the delivery
makes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from outgoing_desk import StartServer
from servers.entra import CLIENT_ID, CLIENT_SECRET, TENANT
from servers.ews_server import EwsMailbox, EwsServer
from servers.graph_server import GraphMailbox, GraphServer
from servers.tls import TestCertificates
from smtp_test_server import SmtpServer

from connectors.base import Transport
from connectors.registry import BUILTIN_TRANSPORTS, make_transport
from connectors.testing_transport import Received, TransportConformance, unused_port
from engine.config.outgoing import OutgoingServer

MAILBOX = "helpdesk@example.com"


def through_registry(type_name: str, **keys: Any) -> Transport:
    """The transport of an ``outgoing.servers`` entry ``{name: main, type: TYPE_NAME, **keys}``."""
    settings = {"name": "main", "type": type_name, **keys}
    return make_transport(OutgoingServer(name="main", type=type_name, settings=settings), Path("."))


class TestSmtpTransport(TransportConformance):
    """smtp: STARTTLS and AUTH against aiosmtpd; SMTP refuses a recipient with 550."""

    transport_type = "smtp"
    refusal_code = 550

    @pytest.fixture(autouse=True)
    def _server(self, smtp: StartServer, certs: TestCertificates) -> None:
        self.server: SmtpServer = smtp(tls="starttls", users={"desk": "s3cret"})
        self.certs = certs

    def keys(self, port: int) -> dict[str, Any]:
        """The entry's keys for a server on ``port``."""
        login = {"username": "desk", "password": "s3cret", "ca_file": str(self.certs.ca_cert)}
        return {"host": "localhost", "port": port, "security": "starttls", "timeout": 10, **login}

    def make_transport(self) -> Transport:
        """A transport to the test server."""
        return through_registry("smtp", **self.keys(self.server.port))

    def make_unreachable_transport(self) -> Transport:
        """A transport to a loopback port nothing listens on."""
        return through_registry("smtp", **self.keys(unused_port()))

    def received(self) -> list[Received]:
        """The messages aiosmtpd recorded, with their RCPT TO addresses."""
        return [Received(a.data, a.rcpt_tos) for a in self.server.handler.arrived]

    def refuse_recipient(self, address: str) -> None:
        """Answer RCPT TO for ``address`` with 550 (the next time it is given)."""
        self.server.handler.answers[address.lower()] = ["550 5.1.1 <nobody@example.com>: no such user"]

    def sessions_used(self) -> int:
        """The number of client connections the messages arrived on."""
        return len({a.peer for a in self.server.handler.arrived})


class TestGraphTransport(TransportConformance):
    """graph: sendMail with an app-only token; Graph has no recipient codes, so a refusal is permanent."""

    transport_type = "graph"
    sender = MAILBOX

    @pytest.fixture(autouse=True)
    def _server(self, certs: TestCertificates) -> Iterator[None]:
        self.certs = certs
        with GraphServer(GraphMailbox(MAILBOX), certs) as server:
            self.server = server
            yield

    def keys(self, base_url: str) -> dict[str, Any]:
        """The entry's keys for Graph and its authority at ``base_url``."""
        app = {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        urls = {
            "graph_url": base_url + "/v1.0",
            "authority_url": base_url,
            "ca_file": str(self.certs.ca_cert),
        }
        return {**app, **urls, "from_address": MAILBOX, "timeout": 10}

    def make_transport(self) -> Transport:
        """A transport sending as the test mailbox."""
        return through_registry("graph", **self.keys(self.server.base_url))

    def make_unreachable_transport(self) -> Transport:
        """A transport whose Graph and authority are a loopback port nothing listens on."""
        return through_registry("graph", **self.keys(f"https://localhost:{unused_port()}"))

    def received(self) -> list[Received]:
        """What sendMail accepted, with the To addresses Graph sends to."""
        return [Received(data, _to_addresses(data)) for data in self.server.mailbox.sent]

    def refuse_recipient(self, address: str) -> None:
        """Make sendMail answer 400 ErrorInvalidRecipients for messages to ``address``."""
        self.server.mailbox.unknown_recipients.add(address)

    def sessions_used(self) -> int:
        """The number of tokens the transports asked for (one per session)."""
        return len(self.server.authority.token_requests)


class TestEwsTransport(TransportConformance):
    """ews: CreateItem SendAndSaveCopy with basic authentication; EWS's codes are names, not numbers."""

    transport_type = "ews"
    sender = MAILBOX

    @pytest.fixture(autouse=True)
    def _server(self, certs: TestCertificates) -> Iterator[None]:
        self.certs = certs
        with EwsServer(EwsMailbox(MAILBOX), certs=certs) as server:
            self.server = server
            yield

    def keys(self, endpoint: str) -> dict[str, Any]:
        """The entry's keys for the EWS endpoint ``endpoint``."""
        login = {"auth": "basic", "username": self.server.username, "password": self.server.password}
        return {"service_endpoint": endpoint, "email": MAILBOX, "ca_file": str(self.certs.ca_cert), **login}

    def make_transport(self) -> Transport:
        """A transport sending from the test mailbox."""
        return through_registry("ews", **self.keys(self.server.url), timeout=10)

    def make_unreachable_transport(self) -> Transport:
        """A transport whose endpoint is a loopback port nothing listens on."""
        endpoint = f"https://localhost:{unused_port()}/EWS/Exchange.asmx"
        return through_registry("ews", **self.keys(endpoint), timeout=10)

    def received(self) -> list[Received]:
        """What Exchange accepted for delivery, with the To addresses it sends to."""
        return [Received(data, _to_addresses(data)) for data in self.server.mailbox.sent]

    def refuse_recipient(self, address: str) -> None:
        """Make CreateItem answer ErrorInvalidRecipients for messages to ``address``."""
        self.server.mailbox.unknown_recipients.add(address)

    def sessions_used(self) -> int:
        """The number of sessions exchangelib opened (each begins with its version probe, ConvertId)."""
        return self.server.operations.count("ConvertId")


def _to_addresses(data: bytes) -> tuple[str, ...]:
    headers = BytesHeaderParser().parsebytes(data)
    return tuple(address for _, address in getaddresses(headers.get_all("To", [])))


def test_every_built_in_transport_runs_the_conformance_suite() -> None:
    """A transport added to the registry needs its conformance class here."""
    here = [c for c in globals().values() if isinstance(c, type) and issubclass(c, TransportConformance)]
    covered = {cls.transport_type for cls in here if cls is not TransportConformance}
    assert covered == set(BUILTIN_TRANSPORTS)
