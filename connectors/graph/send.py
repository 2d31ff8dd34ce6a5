"""The Microsoft Graph transport: ``POST /users/{mailbox}/sendMail`` with the MIME message in base64.

``outgoing: {servers: [{name: online, type: graph, tenant_id: ..., client_id: ..., client_secret: ...,
mailbox: helpdesk@contoso.com}]}``. The app needs the application permission ``Mail.Send``. Graph
sends as ``mailbox`` (the From header must be that mailbox or one it may send as), keeps a copy in
its Sent Items, and takes the recipients from the MIME headers, not from an envelope: a message whose
envelope recipient is not among its To/Cc/Bcc is refused here rather than sent elsewhere. Graph
accepts MIME bodies up to about 4 MB this way. Tokens, Retry-After and CA handling are shared with
the Graph connector (``connectors.graph.client``, imported on the first send, so that this module loads
without the ``graph`` extra).
"""

from __future__ import annotations

import base64
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    Envelope,
    SendError,
    Transport,
    TransportSettings,
    header_recipients,
)

if TYPE_CHECKING:
    from connectors.graph.client import GraphClient


@dataclass(frozen=True, kw_only=True)
class GraphTransportSettings(TransportSettings):
    """The keys of an ``outgoing.servers`` entry of ``type: graph``; ``mailbox`` defaults to from_address."""

    tenant_id: str
    client_id: str
    mailbox: str | None = None
    client_secret: str | None = None
    certificate_file: str | None = None
    certificate_password: str | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority_url: str = "https://login.microsoftonline.com"
    ca_file: str | None = None
    timeout: int = 30

    def __post_init__(self) -> None:
        if (self.client_secret is None) == (self.certificate_file is None):
            raise ValueError("give either client_secret or certificate_file")
        if not (self.mailbox or self.from_address):
            raise ValueError("needs mailbox (the user that sends) or from_address")
        for key in ("graph_url", "authority_url"):
            if urlsplit(getattr(self, key)).scheme != "https":
                raise ValueError(f"{key} must be an https URL")
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1")

    @property
    def sending_mailbox(self) -> str:
        """The user whose mailbox sends."""
        return self.mailbox or self.from_address or ""


class GraphTransport(Transport):
    """Sends each message with one sendMail call (connection and token reused between messages)."""

    name = "graph"
    Settings = GraphTransportSettings
    extra = "graph"
    requires = ("httpx", "msal")

    _client: GraphClient | None = None

    @property
    def graph(self) -> GraphTransportSettings:
        """The settings, typed."""
        assert isinstance(self.settings, GraphTransportSettings)
        return self.settings

    async def send(self, envelope: Envelope) -> str:
        """Hand the message to Graph; ``202 Accepted`` (with Graph's request id) or SendError."""
        if envelope.recipient.lower() not in header_recipients(envelope.data):
            raise SendError(
                f"Graph sends to the message's To/Cc/Bcc only, and {envelope.recipient} is not there",
                permanent=True,
            )
        try:
            client = self._connected()
            url = client.user_url(self.graph.sending_mailbox, "sendMail")
            response = await client.request(
                "POST", url, content=base64.b64encode(envelope.data), headers={"Content-Type": "text/plain"}
            )
        except AuthenticationError as exc:
            raise SendError(str(exc), connection=True) from None
        except ConnectorError as exc:
            await self.close()
            raise SendError(str(exc), connection=True) from None
        if response.status_code == 202:
            request_id = response.headers.get("request-id")
            return "202 Accepted" + (f" (request-id {request_id})" if request_id else "")
        from connectors.graph.client import graph_error

        permanent = 400 <= response.status_code < 500
        raise SendError(f"Graph refused the message: {graph_error(response)}", permanent=permanent)

    async def close(self) -> None:
        """Close the HTTP connections (never raises)."""
        client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):  # closing must never raise
                await client.aclose()

    def _connected(self) -> GraphClient:
        if self._client is None:
            from connectors.graph.client import GraphClient, app_credentials  # httpx and msal, on first use

            settings = self.graph
            credentials = app_credentials(settings, self.base_dir)
            self._client = GraphClient(credentials, settings.graph_url, settings.timeout)
        return self._client
