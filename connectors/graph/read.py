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
429 and 503 are retried after their Retry-After (at most ``MAX_RETRY_WAIT`` seconds, at most
``MAX_RETRIES`` times); a longer wait asked for, or throttling that lasts, raises ``ConnectorError``
so that the service backs off. 401 gets one retry with a new token; then, like 403, it is an
``AuthenticationError``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import httpx

from connectors.base import AuthenticationError, Connector, ConnectorError, ConnectorSettings, MessageRef
from connectors.graph.auth import AppCredentials, TokenSource, graph_scope

log = logging.getLogger(__name__)
MAX_RETRIES = 4
MAX_RETRY_WAIT = 120.0
RETRYABLE = (429, 503)


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


class AppRegistration(Protocol):
    """Settings naming an app registration (the connector's, and the Graph transport's)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str | None: ...
    @property
    def certificate_file(self) -> str | None: ...
    @property
    def certificate_password(self) -> str | None: ...
    @property
    def authority_url(self) -> str: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def timeout(self) -> int: ...


def app_credentials(settings: AppRegistration, base_dir: Path) -> AppCredentials:
    """The token-request side of the settings, with file paths made absolute."""

    def path(value: str | None) -> Path | None:
        return None if value is None else (base_dir / value).resolve()

    return AppCredentials(
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        certificate_file=path(settings.certificate_file),
        certificate_password=settings.certificate_password,
        authority_url=settings.authority_url,
        ca_file=path(settings.ca_file),
        timeout=settings.timeout,
    )


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds the server asks us to wait (delta-seconds or HTTP date); a short backoff if it says nothing."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return float(2**attempt)


def graph_error(response: httpx.Response) -> str:
    """``status code: message`` from Graph's error body, or the status line when there is none."""
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}"


class GraphClient:
    """Authenticated Graph calls with Retry-After handling; shared by the connector and the transport."""

    def __init__(
        self, credentials: AppCredentials, graph_url: str, timeout: float, tokens: TokenSource | None = None
    ) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.tokens = tokens or TokenSource(credentials, graph_scope(graph_url))
        verify: ssl.SSLContext | bool = True
        if credentials.ca_file is not None:
            if not credentials.ca_file.is_file():
                raise ConnectorError(f"ca_file {credentials.ca_file} does not exist")
            verify = ssl.create_default_context(cafile=str(credentials.ca_file))
        self.http = httpx.AsyncClient(verify=verify, timeout=timeout, headers={"User-Agent": "mailgate"})

    def user_url(self, mailbox: str, *path: str) -> str:
        """``{graph}/users/{mailbox}/...`` with each path segment quoted."""
        segments = [quote(mailbox, safe="@")] + [quote(p, safe="$") for p in path]
        return f"{self.graph_url}/users/" + "/".join(segments)

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One Graph call; retried on 429/503 as the server asks, and once with a new token on 401."""
        extra_headers = headers or {}
        renewed = False
        attempt = 0
        while True:
            headers = {**extra_headers, "Authorization": f"Bearer {await self.tokens.bearer()}"}
            try:
                response = await self.http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise ConnectorError(
                    f"Graph {method} {urlsplit(url).path}: {type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code == 401 and not renewed:
                renewed = True
                await self.tokens.forget()
                continue
            if response.status_code in (401, 403):
                raise AuthenticationError(
                    f"Graph refused {method} {urlsplit(url).path}: {graph_error(response)}"
                )
            if response.status_code not in RETRYABLE:
                return response
            wait = _retry_after(response, attempt)
            if attempt >= MAX_RETRIES or wait > MAX_RETRY_WAIT:
                busy = graph_error(response)
                raise ConnectorError(
                    f"Graph still busy ({busy}) after {attempt} retries; asked to wait {wait:.0f} s"
                )
            attempt += 1
            log.info("Graph answered %s; retrying in %.0f s (retry %d)", response.status_code, wait, attempt)
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()


class GraphConnector(Connector):
    """Reads one mail folder of one mailbox through Microsoft Graph."""

    name = "graph"
    Settings = GraphSettings

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, GraphSettings)
        self.graph = settings
        self._credentials = app_credentials(settings, base_dir)
        self._client: GraphClient | None = None
        self._tokens: TokenSource | None = None  # kept across sessions: msal's cache lives in it
        self._destination: str | None = None

    async def connect(self) -> None:
        """Get a token and check that the folders exist."""
        await self.close()
        client = GraphClient(self._credentials, self.graph.graph_url, self.graph.timeout, self._tokens)
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
        if response.is_success:
            return
        raise ConnectorError(f"Graph could not {what} in {self.graph.mailbox}: {graph_error(response)}")
