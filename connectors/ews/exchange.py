"""The exchangelib side of EWS, shared by the EWS connector and the EWS transport.

Imported only when an EWS connector connects or an EWS transport first sends, so that mailgate
without the ``exchange`` extra still loads its config (the registry then says what to install).
Everything here is synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from exchangelib import (  # type: ignore[import-untyped]
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
    Identity,
    Message,
    OAuth2Credentials,
)
from exchangelib.errors import (  # type: ignore[import-untyped]
    ErrorAccessDenied,
    ErrorAccountDisabled,
    ErrorFolderNotFound,
    ErrorImpersonateUserDenied,
    ErrorInvalidRecipients,
    ErrorItemNotFound,
    ErrorMessageSizeExceeded,
    ErrorMimeContentConversionFailed,
    ErrorMimeContentInvalid,
    ErrorMimeContentInvalidBase64String,
    ErrorSendAsDenied,
    ErrorServerBusy,
    EWSError,
    ResponseMessageError,
    UnauthorizedError,
)
from exchangelib.items import HARD_DELETE, MOVE_TO_DELETED_ITEMS, SOFT_DELETE  # type: ignore[import-untyped]
from exchangelib.properties import ItemId  # type: ignore[import-untyped]
from exchangelib.protocol import BaseProtocol, Protocol  # type: ignore[import-untyped]
from oauthlib.oauth2 import OAuth2Error  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from connectors.ews.read import EwsLogin

__all__ = [  # this module's own names, and the exchangelib names the connector and transport use
    "AUTH_TYPES",
    "DELETE_TYPES",
    "NOT_SENT_FOR_GOOD",
    "REFUSED",
    "EWSError",
    "ErrorFolderNotFound",
    "ErrorItemNotFound",
    "ErrorSendAsDenied",
    "ErrorServerBusy",
    "ItemId",
    "Message",
    "RequestException",
    "ResponseMessageError",
    "TenantOAuth2Credentials",
    "drop_protocol",
    "open_account",
    "trust_ca_file",
]

RequestException = requests.RequestException
AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "oauth": OAUTH2}
DELETE_TYPES = {"trash": MOVE_TO_DELETED_ITEMS, "soft": SOFT_DELETE, "hard": HARD_DELETE}
REFUSED = (
    UnauthorizedError,
    ErrorAccessDenied,
    ErrorAccountDisabled,
    ErrorImpersonateUserDenied,
    OAuth2Error,
)
# response codes that retrying the same message cannot cure
NOT_SENT_FOR_GOOD = (
    ErrorInvalidRecipients,
    ErrorMessageSizeExceeded,
    ErrorMimeContentConversionFailed,
    ErrorMimeContentInvalid,
    ErrorMimeContentInvalidBase64String,
)


class TenantOAuth2Credentials(OAuth2Credentials):  # type: ignore[misc]
    """Client-credentials OAuth with the authority and scope taken from the settings."""

    def __init__(self, authority_url: str, scope: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._authority_url = authority_url.rstrip("/")
        self._scope = scope

    @property
    def token_url(self) -> str:
        """The tenant's token endpoint."""
        return f"{self._authority_url}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> list[str]:
        """The resource's ``.default`` scope."""
        return [self._scope]


# --- private CAs: exchangelib's documented hook is a requests adapter class (HTTP_ADAPTER_CLS) ---

_CA_FILES: dict[tuple[str, int], str] = {}


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


class _PrivateCaMixin:
    """Verifies the servers registered in ``_CA_FILES`` against their CA file; never disables checks."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send, verifying a registered server with its own CA."""
        ca_file = _CA_FILES.get(_host_port(request.url or ""))
        if ca_file is not None and kwargs.get("verify", True) is not False:
            kwargs["verify"] = ca_file
        response: requests.Response = super().send(request, *args, **kwargs)  # type: ignore[misc]
        return response


def trust_ca_file(service_endpoint: str, ca_file: str) -> None:
    """Make exchangelib verify ``service_endpoint``'s certificate against ``ca_file`` (PEM)."""
    current = BaseProtocol.HTTP_ADAPTER_CLS
    if not issubclass(current, _PrivateCaMixin):
        # keeps an adapter class an integrator installed (proxies, TLS versions) and adds ours on top
        BaseProtocol.HTTP_ADAPTER_CLS = type(f"PrivateCa{current.__name__}", (_PrivateCaMixin, current), {})
    _CA_FILES[_host_port(service_endpoint)] = ca_file


def open_account(s: EwsLogin, mailbox: str, ca_file: Path | None) -> Any:
    """An exchangelib Account for ``mailbox`` (no autodiscover, no library retries: callers back off)."""
    if ca_file is not None:
        trust_ca_file(s.service_endpoint, str(ca_file))
    if s.auth == "oauth":
        credentials: Any = TenantOAuth2Credentials(
            authority_url=s.authority_url,
            scope=s.oauth_scope,
            client_id=s.client_id,
            client_secret=s.client_secret,
            tenant_id=s.tenant_id,
            identity=Identity(primary_smtp_address=mailbox),
        )
        access_type = IMPERSONATION  # app-only tokens act for the mailbox by impersonation
    else:
        credentials = Credentials(username=s.username, password=s.password)
        access_type = DELEGATE
    config = Configuration(
        service_endpoint=s.service_endpoint,
        credentials=credentials,
        auth_type=AUTH_TYPES[s.auth],
        retry_policy=FailFast(),
        max_connections=1,
    )
    account = Account(
        primary_smtp_address=mailbox, config=config, autodiscover=False, access_type=access_type
    )
    account.protocol.TIMEOUT = s.timeout
    return account


def drop_protocol(account: Any) -> None:
    """Close the account's HTTP sessions and forget exchangelib's cached protocol for its config."""
    protocol = account.protocol
    with suppress(KeyError):
        del Protocol[protocol.config]
    protocol.close()
