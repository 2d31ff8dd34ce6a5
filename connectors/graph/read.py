"""Exchange Online through Microsoft Graph (httpx + msal client credentials).

``connector: {type: graph, tenant_id: ..., client_id: ..., client_secret: ..., mailbox: ...}``
(mailbox: the user id or address, e.g. helpdesk@contoso.com). The app registration needs the
*application* permission ``Mail.ReadWrite`` (``Mail.Send`` for the outgoing transport), granted
by an admin, ideally limited to the helpdesk mailbox by an application access policy.

Calls (Graph v1.0): ``GET /users/{mailbox}/mailFolders/{folder}/messages`` ($select id and
receivedDateTime, oldest first, ``$top`` = page_size, following ``@odata.nextLink``);
``GET /users/{mailbox}/messages/{id}/$value`` for the MIME. Acknowledgement moves the message to
``processed_folder`` (``POST .../messages/{id}/move``), else deletes it as ``delete`` says:
``trash`` (default) moves it to Deleted Items, where an admin expects it; ``soft`` is Graph's
``DELETE`` (Exchange keeps it in the recoverable items; Graph does not document more); ``hard`` is
``POST .../permanentDelete`` (to the purges). A 404 on acknowledgement means already gone.
The calls go through ``connectors.graph.client.GraphClient`` (retries on 429 and 503 as the server
asks; a longer wait asked for, or throttling that lasts, raises ``ConnectorError`` so that the
service backs off; 401 gets one retry with a new token, then, like 403, it is an
``AuthenticationError``). httpx and msal are imported with it when the connector connects, so
this module loads without the ``graph`` extra.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from connectors.base import Connector, ConnectorError, ConnectorSettings, MessageRef

if TYPE_CHECKING:
    import httpx

    from connectors.graph.auth import TokenSource
    from connectors.graph.client import GraphClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphSettings(ConnectorSettings):
    """A mailbox in Exchange Online: tenant, app registration (secret or certificate), folders.

    ``folder`` and ``processed_folder`` are well-known folder names (inbox, archive, ...) or
    folder ids. ``certificate_file`` is a PEM file with the private key and certificate, or a
    .pfx. ``graph_url`` and ``authority_url`` change for national clouds. ``ca_file`` (PEM)
    replaces the system CAs for both, e.g. behind a TLS-inspecting proxy.
    """

    tenant_id: str
    client_id: str
    mailbox: str
    client_secret: str | None = None
    certificate_file: str | None = None
    certificate_password: str | None = None
    folder: str = "inbox"
    processed_folder: str | None = None
    delete: Literal["trash", "soft", "hard"] = "trash"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority_url: str = "https://login.microsoftonline.com"
    ca_file: str | None = None
    page_size: int = 50
    timeout: int = 30

    def __post_init__(self) -> None:
        if (self.client_secret is None) == (self.certificate_file is None):
            raise ValueError("give either client_secret or certificate_file")
        for key in ("graph_url", "authority_url"):
            if urlsplit(getattr(self, key)).scheme != "https":
                raise ValueError(f"{key} must be an https URL")
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1")
        if self.processed_folder is not None and self.processed_folder.lower() == self.folder.lower():
            raise ValueError("processed_folder must differ from folder")


class GraphConnector(Connector):
    """Reads one mail folder of one mailbox through Microsoft Graph."""

    name = "graph"
    Settings = GraphSettings
    extra = "graph"
    requires = ("httpx", "msal")

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, GraphSettings)
        self.graph = settings
        self._client: GraphClient | None = None
        self._tokens: TokenSource | None = None  # kept across sessions: msal's cache lives in it
        self._destination: str | None = None

    async def connect(self) -> None:
        """Get a token and check that the folders exist."""
        await self.close()
        from connectors.graph.client import GraphClient, app_credentials  # httpx and msal, on first use

        credentials = app_credentials(self.graph, self.base_dir)
        client = GraphClient(credentials, self.graph.graph_url, self.graph.timeout, self._tokens)
        self._client, self._tokens = client, client.tokens
        try:
            await self._folder_id(self.graph.folder)
            if self.graph.processed_folder is not None:
                self._destination = await self._folder_id(self.graph.processed_folder)
        except BaseException:
            await self.close()
            raise

    async def list_waiting(self) -> list[MessageRef]:
        """The folder's messages, oldest first, page by page."""
        client = self._session()
        url: str | None = client.user_url(self.graph.mailbox, "mailFolders", self.graph.folder, "messages")
        params: dict[str, Any] | None = {
            "$select": "id,receivedDateTime",
            "$orderby": "receivedDateTime asc",
            "$top": self.graph.page_size,
        }
        refs: list[MessageRef] = []
        while url is not None:
            response = await client.request("GET", url, params=params)
            self._check(response, "list messages")
            page = response.json()
            refs.extend(MessageRef(str(message["id"])) for message in page.get("value", []))
            url, params = page.get("@odata.nextLink"), None  # the next link carries the whole query
        return refs

    async def fetch(self, ref: MessageRef) -> bytes:
        """The message's MIME (``$value``)."""
        client = self._session()
        response = await client.request(
            "GET", client.user_url(self.graph.mailbox, "messages", ref.id, "$value")
        )
        if response.status_code == 404:
            raise ConnectorError(f"Graph message {ref.id[:24]}... is no longer in the mailbox")
        self._check(response, "fetch a message")
        return response.content

    async def acknowledge(self, ref: MessageRef) -> None:
        """Move to the processed folder, or delete as ``delete`` says; already gone (404) is fine."""
        client = self._session()
        url = client.user_url(self.graph.mailbox, "messages", ref.id)
        if self._destination is not None or self.graph.delete == "trash":
            destination = self._destination or "deleteditems"
            response = await client.request("POST", url + "/move", json={"destinationId": destination})
        elif self.graph.delete == "hard":
            response = await client.request("POST", url + "/permanentDelete")
        else:
            response = await client.request("DELETE", url)
        if response.status_code == 404:
            log.info("account %s: Graph message already gone, nothing to acknowledge", self.account)
            return
        self._check(response, "acknowledge a message")

    async def close(self) -> None:
        """Close the HTTP connections (the token cache is kept for the next session)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception as exc:  # closing must never raise
                log.debug("account %s: closing Graph client: %s", self.account, exc)

    def _session(self) -> GraphClient:
        if self._client is None:
            raise ConnectorError("Graph connector is not connected")
        return self._client

    async def _folder_id(self, folder: str) -> str:
        from connectors.graph.client import graph_error

        client = self._session()
        url = client.user_url(self.graph.mailbox, "mailFolders", folder)
        response = await client.request("GET", url, params={"$select": "id,displayName"})
        if response.status_code == 404:
            raise ConnectorError(
                f"Graph: {graph_error(response)} (mailbox {self.graph.mailbox}, folder {folder!r})"
            )
        self._check(response, f"find folder {folder!r}")
        return str(response.json()["id"])

    def _check(self, response: httpx.Response, what: str) -> None:
        from connectors.graph.client import graph_error

        if response.is_success:
            return
        raise ConnectorError(f"Graph could not {what} in {self.graph.mailbox}: {graph_error(response)}")
