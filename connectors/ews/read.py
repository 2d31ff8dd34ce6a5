"""Exchange Server on premises through Exchange Web Services (EWS), with exchangelib.

``connector: {type: ews, service_endpoint: https://mail.example.com/EWS/Exchange.asmx, email: ...}``.
The endpoint is given in full (autodiscover is not used). Messages are listed oldest first by
``DateTimeReceived``, fetched as their MIME content, and acknowledged by moving them to the
processed folder, or else by deleting them: ``delete: trash`` (the default) moves them to Deleted
Items, where an admin can still find them; ``soft`` puts them in the recoverable items (the
dumpster); ``hard`` purges them.

exchangelib is synchronous: every call runs in a worker thread, one at a time per connector. It is
imported (with the rest of ``connectors.ews.exchange``) only when the connector connects, so this
module loads without the ``exchange`` extra.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from connectors.base import AuthenticationError, Connector, ConnectorError, ConnectorSettings, MessageRef

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class EwsSettings(ConnectorSettings):
    """An EWS mailbox: endpoint, mailbox address, credentials, folders and how to delete.

    ``folder`` and ``processed_folder`` are paths from the top of the mailbox, e.g.
    ``Inbox/helpdesk``; a first part ``Inbox`` means the inbox whatever its localised name.
    ``ca_file`` trusts a private CA (PEM) for this endpoint instead of the system's CAs.
    """

    service_endpoint: str
    email: str
    username: str | None = None
    password: str | None = None
    auth: Literal["ntlm", "basic", "oauth"] = "ntlm"
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None
    authority_url: str = "https://login.microsoftonline.com"
    oauth_scope: str = "https://outlook.office365.com/.default"
    folder: str | None = None
    processed_folder: str | None = None
    delete: Literal["trash", "soft", "hard"] = "trash"
    ca_file: str | None = None
    page_size: int = 100
    timeout: int = 120

    def __post_init__(self) -> None:
        check_endpoint(self.service_endpoint)
        if "@" not in self.email:
            raise ValueError("email must be the mailbox's primary SMTP address")
        check_login(self)
        if self.page_size < 1 or self.timeout < 1:
            raise ValueError("page_size and timeout must be at least 1")
        if self.processed_folder is not None and _same_path(self.processed_folder, self.folder or "Inbox"):
            raise ValueError("processed_folder must differ from folder")


def _same_path(a: str, b: str) -> bool:
    return [p.lower() for p in a.split("/") if p] == [p.lower() for p in b.split("/") if p]


def describe_ews_error(exc: BaseException) -> str:
    """A short readable text for an exchangelib error (cut at 300 characters)."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


class EwsConnector(Connector):
    """Reads one folder of an Exchange mailbox through EWS."""

    name = "ews"
    Settings = EwsSettings
    extra = "exchange"
    requires = ("exchangelib",)

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, EwsSettings)
        self.ews = settings
        self._lock = asyncio.Lock()
        self._account: Any = None
        self._folder: Any = None
        self._processed: Any = None

    # --- the interface ---

    async def connect(self) -> None:
        """Log on (the first request also learns the server's version) and find the folders."""
        await self.close()
        await self._run("connect", self._connect_blocking)

    async def list_waiting(self) -> list[MessageRef]:
        """The folder's items, oldest first (FindItem, paged by ``page_size``)."""
        return await self._run("list", self._list_blocking)

    async def fetch(self, ref: MessageRef) -> bytes:
        """The item's MIME content (GetItem)."""
        return await self._run("fetch", self._fetch_blocking, ref.id)

    async def acknowledge(self, ref: MessageRef) -> None:
        """Move the item to the processed folder, or delete it (already gone is fine)."""
        await self._run("acknowledge", self._acknowledge_blocking, ref.id)

    async def close(self) -> None:
        """Forget the session (never raises)."""
        account, self._account = self._account, None
        if account is not None:
            from connectors.ews import exchange

            with suppress(Exception):
                await asyncio.to_thread(exchange.drop_protocol, account)

    # --- blocking work, run in a thread ---

    async def _run(self, what: str, work: Callable[..., T], *args: Any) -> T:
        from connectors.ews import exchange  # exchangelib, imported on first use

        async with self._lock:
            try:
                return await asyncio.to_thread(work, *args)
            except ConnectorError:
                raise
            except exchange.REFUSED as exc:
                raise AuthenticationError(f"EWS {what}: refused: {describe_ews_error(exc)}") from exc
            except (exchange.EWSError, exchange.RequestException, OSError) as exc:
                raise ConnectorError(f"EWS {what}: {type(exc).__name__}: {describe_ews_error(exc)}") from exc
            except Exception as exc:  # exchangelib raises assorted exceptions; never let one escape raw
                raise ConnectorError(
                    f"EWS {what}: unexpected {type(exc).__name__}: {describe_ews_error(exc)}"
                ) from exc

    def _connect_blocking(self) -> None:
        from connectors.ews import exchange

        s = self.ews
        ca_file = resolve_ca_file(self.base_dir, s.ca_file)
        if ca_file is not None and not ca_file.is_file():
            raise ConnectorError(f"ca_file {ca_file} does not exist")
        account = exchange.open_account(s, s.email, ca_file)
        try:
            self._folder = self._find_folder(account, s.folder or "Inbox")
            self._processed = None
            if s.processed_folder is not None:
                self._processed = self._find_folder(account, s.processed_folder)
        except BaseException:
            exchange.drop_protocol(account)
            raise
        self._account = account

    def _find_folder(self, account: Any, path: str) -> Any:
        from connectors.ews import exchange

        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ConnectorError(f"folder {path!r} is empty")
        if parts[0].lower() == "inbox":
            folder, rest = account.inbox, parts[1:]
        else:
            folder, rest = account.msg_folder_root, parts
        for part in rest:
            try:
                folder = folder // part
            except exchange.ErrorFolderNotFound:
                raise ConnectorError(
                    f"EWS mailbox {account.primary_smtp_address} has no folder {path!r}"
                ) from None
        return folder

    def _session(self) -> Any:
        if self._account is None:
            raise ConnectorError("EWS connector is not connected")
        return self._account

    def _list_blocking(self) -> list[MessageRef]:
        self._session()
        query = self._folder.all().only("datetime_received", "size").order_by("datetime_received")
        query.page_size = self.ews.page_size
        return [MessageRef(str(item.id), item.size) for item in query]

    def _fetch_blocking(self, item_id: str) -> bytes:
        from connectors.ews import exchange

        account = self._session()
        [item] = list(account.fetch(ids=[exchange.ItemId(id=item_id)], only_fields=["mime_content"]))
        if isinstance(item, exchange.ErrorItemNotFound):
            raise ConnectorError(f"EWS item {item_id[:24]}... is no longer in the mailbox")
        if isinstance(item, BaseException):
            raise item
        if item.mime_content is None:
            raise ConnectorError(f"EWS item {item_id[:24]}... has no MIME content")
        return bytes(item.mime_content)

    def _acknowledge_blocking(self, item_id: str) -> None:
        from connectors.ews import exchange

        account = self._session()
        ids = [exchange.ItemId(id=item_id)]
        if self._processed is not None:
            results = account.bulk_move(ids=ids, to_folder=self._processed)
        else:
            results = account.bulk_delete(ids=ids, delete_type=exchange.DELETE_TYPES[self.ews.delete])
        for result in results:
            if isinstance(result, exchange.ErrorItemNotFound):
                log.info("account %s: EWS item already gone, nothing to acknowledge", self.account)
            elif isinstance(result, BaseException):
                raise result


class EwsLogin(typing.Protocol):
    """The login fields the EWS connector and the EWS outgoing transport share (read-only)."""

    @property
    def service_endpoint(self) -> str: ...

    @property
    def auth(self) -> str: ...

    @property
    def username(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...

    @property
    def client_id(self) -> str | None: ...

    @property
    def client_secret(self) -> str | None: ...

    @property
    def tenant_id(self) -> str | None: ...

    @property
    def authority_url(self) -> str: ...

    @property
    def oauth_scope(self) -> str: ...

    @property
    def timeout(self) -> float: ...


def check_endpoint(service_endpoint: str) -> None:
    """Refuse (ValueError) an EWS endpoint that is not a full http(s) URL."""
    if urlsplit(service_endpoint).scheme not in ("http", "https"):
        raise ValueError(
            "service_endpoint must be the full EWS URL, e.g. https://mail.example.com/EWS/Exchange.asmx"
        )


def check_login(s: EwsLogin) -> None:
    """Refuse (ValueError) login settings that lack what their ``auth`` needs."""
    if s.auth == "oauth":
        missing = [k for k in ("client_id", "tenant_id", "client_secret") if not getattr(s, k)]
    else:
        missing = [k for k in ("username", "password") if getattr(s, k) is None]
    if missing:
        raise ValueError(f"auth {s.auth} needs {' and '.join(missing)}")


def resolve_ca_file(base_dir: Path, ca_file: str | None) -> Path | None:
    """The absolute path of a configured ``ca_file`` (relative to the config's folder, ``~`` expanded)."""
    return None if ca_file is None else (base_dir / Path(ca_file).expanduser()).resolve()
