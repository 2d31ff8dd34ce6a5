"""A loopback Microsoft Entra ID authority: what msal and requests-oauthlib ask of login.microsoftonline.com.

``Authority`` serves the tenant's OpenID discovery document
(``/{tenant}/v2.0/.well-known/openid-configuration``) and the v2.0 token endpoint for one confidential
client (client credentials with a secret, or a JWT client assertion signed with a certificate),
answering refusals as Entra ID does: ``{"error", "error_description": "AADSTS...", "error_codes",
"timestamp", "trace_id", "correlation_id", "error_uri"}``. It is hosted by the Graph and EWS test
servers on their own port (``serves`` answers a request meant for it).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "6f1c9b2e-0d4a-4c8e-9a57-3b2f1e0c7d11"
CLIENT_ID = "0b8e5a4c-2f1d-4e3b-8c6a-9d7f1a2b3c4d"
CLIENT_SECRET = "Qx8~secret.value"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_serial = itertools.count(1)


class Authority:
    """The token side: issues bearer tokens to one confidential client and remembers every request."""

    def __init__(
        self, tenant: str = TENANT, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET
    ) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.base_url = ""  # set by the server hosting it
        self.expires_in = 3599
        self.token_requests: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.refusal: tuple[int, dict[str, Any]] | None = None  # answer every token request with this
        self.certificate_pem: bytes | None = None  # accept client assertions signed for this certificate

    def revoke_consent(self) -> None:
        """From now on, answer token requests as Entra does once the app's service principal is gone."""
        self.refusal = (
            400,
            self._error(
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{self.client_id}' was not found in the "
                f"directory '{self.tenant}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            ),
        )

    def valid(self, token: str) -> bool:
        """Whether the token was issued here."""
        return token in self.issued

    @property
    def latest_token(self) -> str:
        """The last token issued."""
        return self.issued[-1]

    def _error(self, error: str, code: int, description: str) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace = "0c4d2b8e-1f3a-4b5c-9d6e-7f8a9b0c1d2e"
        return {
            "error": error,
            "error_description": (
                f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {now}"
            ),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": f"{self.base_url}/error?code={code}",
        }

    def discovery(self) -> dict[str, Any]:
        """The tenant's OpenID configuration (the fields msal reads, plus the usual neighbours)."""
        base = f"{self.base_url}/{self.tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url}/{self.tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "msgraph_host": "graph.microsoft.com",
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer one token request (client_credentials with client_secret_post)."""
        self.token_requests.append(form)
        if self.refusal is not None:
            return self.refusal
        if form.get("grant_type") != "client_credentials":
            return 400, self._error(
                "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."
            )
        if form.get("client_id") != self.client_id:
            return 400, self._error(
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found.",
            )
        if "client_assertion" in form:
            if not self._assertion_ok(form):
                return 401, self._error(
                    "invalid_client", 700027, "AADSTS700027: Client assertion failed signature validation."
                )
        elif form.get("client_secret") != self.client_secret:
            return 401, self._error(
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID.",
            )
        token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=") + f".{next(_serial)}"
        self.issued.append(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": token,
        }

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        """A JWT bearer assertion signed with the registered certificate's key, for our token endpoint."""
        import jwt
        from cryptography import x509

        if self.certificate_pem is None or form.get("client_assertion_type") != JWT_BEARER:
            return False
        public_key = x509.load_pem_x509_certificate(self.certificate_pem).public_key()
        try:
            claims = jwt.decode(
                form["client_assertion"],
                key=public_key,  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=self.discovery()["token_endpoint"],
            )
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("iss") == claims.get("sub") == self.client_id)

    def serves(self, handler: BaseHTTPRequestHandler) -> bool:
        """Answer the request if it is for the authority; False if it is not."""
        path = urlsplit(handler.path).path
        if handler.command == "GET" and path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            reply_json(handler, 200, self.discovery())
            return True
        if handler.command == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            body = handler.rfile.read(int(handler.headers.get("Content-Length", "0"))).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            status, payload = self.token(form)
            reply_json(handler, status, payload)
            return True
        return False


def reply(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    if body or status not in (204,):
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def reply_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    reply(handler, status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)
