"""The HTTP side of Microsoft Graph (httpx, and msal through ``connectors.graph.auth``).

Shared by the Graph connector and the Graph transport, and imported only when one of them first
talks to Graph, so that mailgate without the ``graph`` extra still loads its config (the registry
then says what to install). ``GraphClient`` makes authenticated calls with Retry-After handling:
429 and 503 are retried after their Retry-After (at most ``MAX_RETRY_WAIT`` seconds, at most
``MAX_RETRIES`` times); 401 gets one retry with a new token, then, like 403, it is an
``AuthenticationError``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from connectors.base import AuthenticationError, ConnectorError
from connectors.graph.auth import AppCredentials, TokenSource, graph_scope

log = logging.getLogger(__name__)
MAX_RETRIES = 4
MAX_RETRY_WAIT = 120.0
RETRYABLE = (429, 503)


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
