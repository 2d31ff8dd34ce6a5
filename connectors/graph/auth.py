"""App-only OAuth tokens for Microsoft Graph: msal's client-credentials flow, refreshed before expiry.

Used by the Graph connector and the Graph outgoing transport. msal is synchronous (requests), so it
runs in a worker thread. A token is reused until it has less than five minutes left; msal applies
the same rule to its own cache, so asking again then gets a fresh token from the authority. A
refused token request (wrong secret, consent revoked, app deleted) raises ``AuthenticationError``
carrying Entra ID's ``error_description`` (the AADSTS code and text); an authority that is down
(``temporarily_unavailable``, ``server_error``, no answer) raises ``ConnectorError``. Nothing here
retries: the service backs off.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal  # type: ignore[import-untyped]
import requests

from connectors.base import AuthenticationError, ConnectorError

REFRESH_MARGIN_SECONDS = 300
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class AppCredentials:
    """Who asks for tokens: a tenant, an app registration, and its secret or certificate file."""

    tenant_id: str
    client_id: str
    client_secret: str | None = None
    certificate_file: Path | None = None
    certificate_password: str | None = None
    authority_url: str = "https://login.microsoftonline.com"
    ca_file: Path | None = None
    timeout: float = 30.0


def graph_scope(graph_url: str) -> str:
    """The ``.default`` scope of the Graph host in ``graph_url`` (national clouds included)."""
    parts = urlsplit(graph_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def _client_credential(credentials: AppCredentials) -> str | dict[str, Any]:
    if credentials.certificate_file is None:
        return credentials.client_secret or ""
    path = credentials.certificate_file
    if path.suffix.lower() in (".pfx", ".p12"):
        pfx: dict[str, Any] = {"private_key_pfx_path": str(path)}
        if credentials.certificate_password:
            pfx["passphrase"] = credentials.certificate_password
        return pfx
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConnectorError(f"certificate_file {path}: {exc.strerror or exc}") from None
    blocks = {m.group(1): m.group(0) for m in _PEM_BLOCK.finditer(text)}
    key = next((block for kind, block in blocks.items() if kind.endswith("PRIVATE KEY")), None)
    if key is None or "CERTIFICATE" not in blocks:
        raise ConnectorError(f"certificate_file {path} must hold the private key and the certificate (PEM)")
    pem: dict[str, Any] = {"private_key": key, "public_certificate": blocks["CERTIFICATE"]}
    if credentials.certificate_password:
        pem["passphrase"] = credentials.certificate_password
    return pem


class _CaFileAdapter(requests.adapters.HTTPAdapter):
    """Verifies servers against one CA file, whatever REQUESTS_CA_BUNDLE says (it beats Session.verify)."""

    def __init__(self, ca_file: str) -> None:
        super().__init__(max_retries=1)
        self.ca_file = ca_file

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with ``verify`` set to the CA file (never turned off)."""
        kwargs["verify"] = self.ca_file
        return super().send(request, *args, **kwargs)


class _TimeoutSession(requests.Session):
    """A requests session with a default timeout (msal passes none of its own to a given client)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with the default timeout unless one is given."""
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


class TokenSource:
    """Bearer tokens for one app and one scope; ``bearer()`` is cheap while the token is fresh."""

    def __init__(self, credentials: AppCredentials, scope: str) -> None:
        self.credentials = credentials
        self.scope = scope
        self._app: Any = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def bearer(self) -> str:
        """A token with more than five minutes left (asks the authority when needed)."""
        async with self._lock:
            if self._token is not None and self._expires_at - time.monotonic() >= REFRESH_MARGIN_SECONDS:
                return self._token
            token, expires_in = await asyncio.to_thread(self._acquire)
            self._token, self._expires_at = token, time.monotonic() + expires_in
            return token

    async def forget(self) -> None:
        """Drop the current token (the resource refused it), so the next ``bearer()`` gets a new one."""
        async with self._lock:
            self._token = None
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)

    def _acquire(self) -> tuple[str, float]:
        authority = self.credentials.authority_url
        try:
            if self._app is None:
                try:
                    self._app = self._make_app()
                except ValueError as exc:  # msal: the discovery document was refused (unknown tenant)
                    tenant = self.credentials.tenant_id
                    raise AuthenticationError(f"{authority} refused tenant {tenant}: {exc}") from exc
            result = self._app.acquire_token_for_client(scopes=[self.scope])
        except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:  # no answer, or a 5xx
            raise ConnectorError(f"token request to {authority} failed: {exc}") from exc
        except ValueError as exc:  # msal could not read the token endpoint's answer
            raise ConnectorError(f"token request to {authority} got an unreadable answer: {exc}") from exc
        if "access_token" not in result:
            error = str(result.get("error", "unknown_error"))
            description = _first_line(str(result.get("error_description", "")))
            refused = ConnectorError if error in TRANSIENT_ERRORS else AuthenticationError
            raise refused(f"token request refused: {error}: {description}")
        return str(result["access_token"]), float(result.get("expires_in", 0))

    def _make_app(self) -> Any:
        c = self.credentials
        http_client = _TimeoutSession(c.timeout)
        if c.ca_file is not None:
            http_client.mount("https://", _CaFileAdapter(str(c.ca_file)))
        return msal.ConfidentialClientApplication(
            c.client_id,
            client_credential=_client_credential(c),
            authority=f"{c.authority_url.rstrip('/')}/{c.tenant_id}",
            # a private authority host (tests, proxies) is not in Microsoft's instance list
            instance_discovery=urlsplit(c.authority_url).hostname
            in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS,
            http_client=http_client,
        )
