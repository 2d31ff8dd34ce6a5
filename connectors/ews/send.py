"""The EWS transport: Exchange Server sends the MIME message from the mailbox (CreateItem, SendAndSaveCopy).

``outgoing: {servers: [{name: exchange, type: ews, service_endpoint: https://mail.example.com/EWS/Exchange.asmx,
email: helpdesk@example.com, username: 'CONTOSO\\helpdesk', password: ...}]}``. The keys and the
credentials are the EWS connector's (``connectors.ews.read``: NTLM, Basic or OAuth client credentials with
impersonation; ``ca_file`` for a private CA), so an account read through EWS can answer through it.

exchangelib creates the message from the exact MIME bytes (``MimeContent``) and sends it with
``MessageDisposition="SendAndSaveCopy"``, keeping a copy in the mailbox's Sent Items (found by its
well-known name, whatever its language), as Outlook and the Graph transport do. Saving there also
makes the mailbox the sender when the login is a service account with rights on it (EWS cannot send
``SendOnly`` on behalf of another mailbox). Exchange takes the recipients from the MIME headers, not
from an envelope: a message whose envelope recipient is not among its To/Cc/Bcc is refused here
rather than sent elsewhere. The From must be the mailbox, or an address it has Send As rights on.

exchangelib is synchronous: each send runs in a worker thread, one at a time per transport. It is
imported (``connectors.ews.exchange``) on the first send, so this module loads without the
``exchange`` extra.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from connectors.base import Envelope, SendError, Transport, TransportSettings, header_recipients
from connectors.ews.read import check_endpoint, check_login, describe_ews_error, resolve_ca_file


@dataclass(frozen=True, kw_only=True)
class EwsTransportSettings(TransportSettings):
    """The keys of an ``outgoing.servers`` entry of ``type: ews``; ``email`` defaults to from_address."""

    service_endpoint: str
    email: str | None = None
    username: str | None = None
    password: str | None = None
    auth: Literal["ntlm", "basic", "oauth"] = "ntlm"
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None
    authority_url: str = "https://login.microsoftonline.com"
    oauth_scope: str = "https://outlook.office365.com/.default"
    ca_file: str | None = None
    timeout: int = 60

    def __post_init__(self) -> None:
        check_endpoint(self.service_endpoint)
        if "@" not in self.mailbox:
            raise ValueError("needs email (the mailbox's primary SMTP address) or from_address")
        check_login(self)
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1")

    @property
    def mailbox(self) -> str:
        """The mailbox that sends (and keeps the copies)."""
        return self.email or self.from_address or ""


class EwsTransport(Transport):
    """Sends each message with one CreateItem request (the session is kept between messages)."""

    name = "ews"
    Settings = EwsTransportSettings
    extra = "exchange"
    requires = ("exchangelib",)

    def __init__(self, settings: TransportSettings, base_dir: Path) -> None:
        super().__init__(settings, base_dir)
        self._lock = asyncio.Lock()
        self._account: Any = None

    @property
    def ews(self) -> EwsTransportSettings:
        """The settings, typed."""
        assert isinstance(self.settings, EwsTransportSettings)
        return self.settings

    async def send(self, envelope: Envelope) -> str:
        """Hand the message to Exchange; ``NoError ...`` or SendError."""
        if envelope.recipient.lower() not in header_recipients(envelope.data):
            raise SendError(
                f"EWS sends to the message's To/Cc/Bcc only, and {envelope.recipient} is not there",
                permanent=True,
            )
        async with self._lock:
            try:
                return await asyncio.to_thread(self._send_blocking, envelope.data)
            except Exception as exc:
                error = exc if isinstance(exc, SendError) else self._send_error(exc)
                if error.connection:
                    await self._forget()
                raise error from None

    async def close(self) -> None:
        """Close the HTTP session (never raises)."""
        async with self._lock:
            await self._forget()

    async def _forget(self) -> None:
        account, self._account = self._account, None
        if account is not None:
            from connectors.ews import exchange

            with suppress(Exception):  # closing must never raise
                await asyncio.to_thread(exchange.drop_protocol, account)

    # --- blocking work, run in a thread ---

    def _send_blocking(self, data: bytes) -> str:
        from connectors.ews import exchange  # exchangelib, imported on first use

        if self._account is None:
            self._account = self._new_account()
        account = self._account
        # the copy in Sent Items is marked read, as a message sent from Outlook is
        exchange.Message(
            account=account, folder=account.sent, mime_content=data, is_read=True
        ).send_and_save()
        build = getattr(getattr(account, "version", None), "build", None)
        server = f" (Exchange {build})" if build is not None else ""
        return f"NoError: sent by {self.ews.mailbox}, a copy saved in Sent Items{server}"

    def _new_account(self) -> Any:
        from connectors.ews import exchange

        s = self.ews
        ca_file = resolve_ca_file(self.base_dir, s.ca_file)
        if ca_file is not None and not ca_file.is_file():
            raise SendError(f"ca_file {ca_file} does not exist", connection=True)
        return exchange.open_account(s, s.mailbox, ca_file)

    def _send_error(self, exc: Exception) -> SendError:
        """What the delivery needs to know about an exchangelib failure."""
        from connectors.ews import exchange

        s = self.ews
        said = f"{type(exc).__name__}: {describe_ews_error(exc)}"
        if isinstance(exc, exchange.REFUSED):
            who = s.client_id if s.auth == "oauth" else s.username
            return SendError(f"EWS refused the login of {who} for {s.mailbox}: {said}", connection=True)
        if isinstance(exc, exchange.ErrorServerBusy):
            return SendError(f"EWS server is busy, try later: {said}", connection=True)
        if isinstance(exc, exchange.NOT_SENT_FOR_GOOD):
            return SendError(f"EWS refused the message: {said}", permanent=True)
        if isinstance(exc, exchange.ErrorSendAsDenied):
            return SendError(
                f"EWS refused the message: {said} (the From address must be {s.mailbox} "
                "or one it has Send As rights on)"
            )
        if isinstance(
            exc, exchange.ResponseMessageError
        ):  # another refusal of this message: tried again later
            return SendError(f"EWS refused the message: {said}")
        return SendError(f"EWS {s.service_endpoint}: {said}", connection=True)
