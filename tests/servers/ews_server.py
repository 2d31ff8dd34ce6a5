"""A loopback Exchange Web Services server holding one in-memory mailbox, for the EWS connector tests.

It answers the SOAP operations exchangelib sends for what mailgate does, shaped as Exchange 2016/2019
sends them (EWS reference on learn.microsoft.com): the ``ServerVersionInfo`` SOAP header on every
response, ``ConvertId`` (exchangelib's version probe, answered with an error message as a real
server does for its dummy id), ``GetFolder``, ``FindFolder`` (a display-name restriction),
``FindItem`` (indexed paging with ``IndexedPagingOffset``/``IncludesLastItemInRange``, sorted),
``GetItem`` (``MimeContent`` in base64), ``DeleteItem`` (the three delete types) and ``MoveItem``
(new item ids). Other operations get a SOAP fault, so an unexpected request shows up as a failure.

Authentication is HTTP Basic (a wrong password gets 401, as IIS answers) or a bearer token issued
by the test authority (``tests.servers.graph_server.Authority``) served on the same port. HTTPS
with a throwaway CA when ``certs`` is given.
"""

from __future__ import annotations

import base64
import itertools
import os
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

from servers.graph_server import Authority
from servers.tls import TestCertificates

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
EWS_PATH = "/EWS/Exchange.asmx"
VERSION_HEADER = (
    '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" '
    f'Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}"/>'
)
_ids = itertools.count(1)


def _new_id(kind: bytes) -> str:
    """An opaque base64 id like Exchange's (it contains '+', '/' and '=' often enough)."""
    return base64.b64encode(
        b"\x00\x00\x00\x00" + kind + next(_ids).to_bytes(4, "big") + os.urandom(30)
    ).decode()


@dataclass
class EwsFolder:
    """A mail folder; ``distinguished`` is its well-known id (inbox, deleteditems, ...) if any."""

    name: str
    parent: str | None
    distinguished: str | None = None
    id: str = field(default_factory=lambda: _new_id(b"F"))
    changekey: str = field(default_factory=lambda: base64.b64encode(os.urandom(12)).decode())


@dataclass
class EwsItem:
    """A message in a folder."""

    mime: bytes
    received: datetime
    folder: str
    id: str = field(default_factory=lambda: _new_id(b"I"))
    changekey: str = field(default_factory=lambda: base64.b64encode(os.urandom(12)).decode())


class EwsMailbox:
    """The mailbox the server serves; tests deliver into it and look at what is left."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.lock = threading.Lock()
        self.folders: dict[str, EwsFolder] = {}
        self.items: dict[str, EwsItem] = {}
        self._clock = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        root = self._add(EwsFolder("", None, "root"))
        top = self._add(EwsFolder("Top of Information Store", root.id, "msgfolderroot"))
        self._add(EwsFolder("Inbox", top.id, "inbox"))
        self._add(EwsFolder("Deleted Items", top.id, "deleteditems"))
        self._add(EwsFolder("Recoverable Items", root.id, "recoverableitemsroot"))

    def _add(self, folder: EwsFolder) -> EwsFolder:
        self.folders[folder.id] = folder
        return folder

    def folder(self, path: str) -> EwsFolder:
        """The folder at ``path`` from the top of the mailbox (``Inbox/helpdesk``), created if missing."""
        with self.lock:
            current = self.distinguished("msgfolderroot")
            for part in (p for p in path.split("/") if p):
                found = [f for f in self.children(current.id) if f.name.lower() == part.lower()]
                current = found[0] if found else self._add(EwsFolder(part, current.id))
            return current

    def distinguished(self, name: str) -> EwsFolder:
        """The folder with that well-known id."""
        return next(f for f in self.folders.values() if f.distinguished == name)

    def children(self, folder_id: str) -> list[EwsFolder]:
        """The direct subfolders."""
        return [f for f in self.folders.values() if f.parent == folder_id]

    def deliver(self, raw: bytes, path: str = "Inbox") -> str:
        """Put a message in a folder (each one received a minute after the previous); returns its id."""
        target = self.folder(path)
        with self.lock:
            self._clock += timedelta(minutes=1)
            item = EwsItem(raw, self._clock, target.id)
            self.items[item.id] = item
            return item.id

    def messages(self, path: str = "Inbox") -> list[bytes]:
        """The messages in a folder, oldest first."""
        target = self.folder(path)
        with self.lock:
            return [
                i.mime for i in sorted(self.items.values(), key=lambda i: i.received) if i.folder == target.id
            ]

    def in_folder(self, folder_id: str) -> list[EwsItem]:
        """The items of a folder, oldest first (call with the lock held)."""
        return sorted((i for i in self.items.values() if i.folder == folder_id), key=lambda i: i.received)


# --- SOAP rendering ---------------------------------------------------------------------------------


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header>{VERSION_HEADER}</s:Header>'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
    ).encode()


def _response(operation: str, messages: list[str]) -> bytes:
    return _envelope(
        f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
        + "".join(messages)
        + f"</m:ResponseMessages></m:{operation}Response>"
    )


def _success(operation: str, content: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{content}</m:{operation}ResponseMessage>"
    )


def _error(operation: str, code: str, text: str, content: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{content}</m:{operation}ResponseMessage>"
    )


def _fault(text: str) -> bytes:
    return _envelope(
        f"<s:Fault><faultcode>s:Client</faultcode><faultstring>{escape(text)}</faultstring></s:Fault>"
    )


NOT_FOUND = (
    "The specified object was not found in the store., The process failed to get the correct properties."
)


RIGHTS = "".join(
    f"<t:{right}>true</t:{right}>"
    for right in (
        "CreateAssociated",
        "CreateContents",
        "CreateHierarchy",
        "Delete",
        "Modify",
        "Read",
        "ViewPrivateItems",
    )
)


def _folder_xml(mailbox: EwsMailbox, folder: EwsFolder, properties: set[str]) -> str:
    """A t:Folder with the properties asked for, in the schema's order (FolderType)."""
    parent = mailbox.folders.get(folder.parent or "")
    parts = [f"<t:FolderId Id={quoteattr(folder.id)} ChangeKey={quoteattr(folder.changekey)}/>"]
    if parent is not None and "folder:ParentFolderId" in properties:
        parts.append(f"<t:ParentFolderId Id={quoteattr(parent.id)} ChangeKey={quoteattr(parent.changekey)}/>")
    if parent is not None and "folder:FolderClass" in properties:
        parts.append("<t:FolderClass>IPF.Note</t:FolderClass>")
    if "folder:DisplayName" in properties:
        parts.append(f"<t:DisplayName>{escape(folder.name)}</t:DisplayName>")
    if "folder:TotalCount" in properties:
        parts.append(f"<t:TotalCount>{len(mailbox.in_folder(folder.id))}</t:TotalCount>")
    if "folder:ChildFolderCount" in properties:
        parts.append(f"<t:ChildFolderCount>{len(mailbox.children(folder.id))}</t:ChildFolderCount>")
    if "folder:EffectiveRights" in properties:
        parts.append(f"<t:EffectiveRights>{RIGHTS}</t:EffectiveRights>")
    if folder.distinguished and "folder:DistinguishedFolderId" in properties:
        parts.append(f"<t:DistinguishedFolderId>{folder.distinguished}</t:DistinguishedFolderId>")
    if "folder:UnreadCount" in properties:
        parts.append("<t:UnreadCount>0</t:UnreadCount>")
    return "<t:Folder>" + "".join(parts) + "</t:Folder>"


def _item_xml(item: EwsItem, properties: set[str]) -> str:
    parts = [f"<t:ItemId Id={quoteattr(item.id)} ChangeKey={quoteattr(item.changekey)}/>"]
    if "item:MimeContent" in properties:
        parts.insert(
            0, f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(item.mime).decode()}</t:MimeContent>'
        )
    if "item:DateTimeReceived" in properties:
        parts.append(
            f"<t:DateTimeReceived>{item.received.strftime('%Y-%m-%dT%H:%M:%SZ')}</t:DateTimeReceived>"
        )
    if "item:Size" in properties:
        parts.append(f"<t:Size>{len(item.mime)}</t:Size>")
    return "<t:Message>" + "".join(parts) + "</t:Message>"


# --- the operations ---------------------------------------------------------------------------------


class SoapError(Exception):
    """A request the server does not understand: answered with a SOAP fault."""


class EwsOperations:
    """The operations, each taking the request's operation element and returning the SOAP response."""

    def __init__(self, mailbox: EwsMailbox) -> None:
        self.mailbox = mailbox

    def folder_of(self, ref: ET.Element) -> EwsFolder | None:
        """The folder a ``FolderId`` or ``DistinguishedFolderId`` element names (None if missing)."""
        if ref.tag == f"{{{T}}}DistinguishedFolderId":
            address = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            if address is not None and address.lower() != self.mailbox.email.lower():
                return None
            name = ref.get("Id", "")
            return next((f for f in self.mailbox.folders.values() if f.distinguished == name), None)
        if ref.tag == f"{{{T}}}FolderId":
            return self.mailbox.folders.get(ref.get("Id", ""))
        raise SoapError(f"unexpected folder reference {ref.tag}")

    def properties(self, shape: ET.Element | None) -> set[str]:
        """The FieldURIs asked for in an ItemShape/FolderShape."""
        if shape is None:
            return set()
        return {uri.get("FieldURI", "") for uri in shape.iter(f"{{{T}}}FieldURI")}

    def ConvertId(self, request: ET.Element) -> bytes:
        """exchangelib's version probe converts a dummy id: answered, as Exchange does, with an error."""
        return _response("ConvertId", [_error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")])

    def GetFolder(self, request: ET.Element) -> bytes:
        """Folders by id or well-known name."""
        properties = self.properties(request.find(f"{{{M}}}FolderShape"))
        answers = []
        for ref in request.find(f"{{{M}}}FolderIds") or []:
            folder = self.folder_of(ref)
            if folder is None:
                answers.append(
                    _error(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
            else:
                answers.append(
                    _success(
                        "GetFolder", f"<m:Folders>{_folder_xml(self.mailbox, folder, properties)}</m:Folders>"
                    )
                )
        return _response("GetFolder", answers)

    def FindFolder(self, request: ET.Element) -> bytes:
        """Direct subfolders (Traversal Shallow), optionally restricted to one display name."""
        if request.get("Traversal") != "Shallow":
            raise SoapError("only Shallow FindFolder is served")
        wanted = None
        restriction = request.find(f"{{{M}}}Restriction")
        if restriction is not None:
            equal = restriction.find(f"{{{T}}}IsEqualTo")
            uri = equal.find(f"{{{T}}}FieldURI") if equal is not None else None
            constant = equal.find(f".//{{{T}}}Constant") if equal is not None else None
            if uri is None or uri.get("FieldURI") != "folder:DisplayName" or constant is None:
                raise SoapError("only a folder:DisplayName IsEqualTo restriction is served")
            wanted = constant.get("Value", "").lower()
        properties = self.properties(request.find(f"{{{M}}}FolderShape"))
        answers = []
        for ref in request.find(f"{{{M}}}ParentFolderIds") or []:
            parent = self.folder_of(ref)
            if parent is None:
                answers.append(
                    _error(
                        "FindFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
                continue
            found = [
                f for f in self.mailbox.children(parent.id) if wanted is None or f.name.lower() == wanted
            ]
            answers.append(
                _success(
                    "FindFolder",
                    f'<m:RootFolder IndexedPagingOffset="{len(found)}" TotalItemsInView="{len(found)}" '
                    'IncludesLastItemInRange="true"><t:Folders>'
                    + "".join(_folder_xml(self.mailbox, f, properties) for f in found)
                    + "</t:Folders></m:RootFolder>",
                )
            )
        return _response("FindFolder", answers)

    def FindItem(self, request: ET.Element) -> bytes:
        """A folder's items, sorted as asked, one indexed page at a time."""
        view = request.find(f"{{{M}}}IndexedPageItemView")
        if view is None or view.get("BasePoint", "Beginning") != "Beginning":
            raise SoapError("only IndexedPageItemView from the beginning is served")
        offset, size = int(view.get("Offset", "0")), int(view.get("MaxEntriesReturned", "1000"))
        descending = True  # Exchange's default view order is newest first
        for order in request.iter(f"{{{T}}}FieldOrder"):
            uri = order.find(f"{{{T}}}FieldURI")
            if uri is None or uri.get("FieldURI") != "item:DateTimeReceived":
                raise SoapError("only sorting by item:DateTimeReceived is served")
            descending = order.get("Order") == "Descending"
        properties = self.properties(request.find(f"{{{M}}}ItemShape"))
        answers = []
        for ref in request.find(f"{{{M}}}ParentFolderIds") or []:
            folder = self.folder_of(ref)
            if folder is None:
                answers.append(
                    _error(
                        "FindItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
                continue
            items = self.mailbox.in_folder(folder.id)[:: -1 if descending else 1]
            page = items[offset : offset + size]
            last = "true" if offset + len(page) >= len(items) else "false"
            answers.append(
                _success(
                    "FindItem",
                    f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" '
                    f'TotalItemsInView="{len(items)}" IncludesLastItemInRange="{last}">'
                    "<t:Items>"
                    + "".join(_item_xml(i, properties) for i in page)
                    + "</t:Items></m:RootFolder>",
                )
            )
        return _response("FindItem", answers)

    def _item_ids(self, request: ET.Element) -> list[str]:
        ids = request.find(f"{{{M}}}ItemIds")
        if ids is None:
            raise SoapError("ItemIds missing")
        return [ref.get("Id", "") for ref in ids]

    def GetItem(self, request: ET.Element) -> bytes:
        """Items by id, with the properties asked for (MimeContent as base64)."""
        shape = request.find(f"{{{M}}}ItemShape")
        properties = self.properties(shape)
        if shape is not None and shape.findtext(f"{{{T}}}IncludeMimeContent") == "true":
            properties.add("item:MimeContent")
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.get(item_id)
            if item is None:
                answers.append(_error("GetItem", "ErrorItemNotFound", NOT_FOUND, "<m:Items/>"))
            else:
                answers.append(_success("GetItem", f"<m:Items>{_item_xml(item, properties)}</m:Items>"))
        return _response("GetItem", answers)

    def DeleteItem(self, request: ET.Element) -> bytes:
        """HardDelete purges; SoftDelete moves to recoverable items, MoveToDeletedItems to Deleted Items."""
        delete_type = request.get("DeleteType")
        targets = {
            "SoftDelete": "recoverableitemsroot",
            "MoveToDeletedItems": "deleteditems",
            "HardDelete": None,
        }
        if delete_type not in targets:
            raise SoapError(f"bad DeleteType {delete_type!r}")
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.pop(item_id, None)
            if item is None:
                answers.append(_error("DeleteItem", "ErrorItemNotFound", NOT_FOUND))
                continue
            target = targets[delete_type]
            if target is not None:
                moved = EwsItem(item.mime, item.received, self.mailbox.distinguished(target).id)
                self.mailbox.items[moved.id] = moved
            answers.append(_success("DeleteItem"))
        return _response("DeleteItem", answers)

    def MoveItem(self, request: ET.Element) -> bytes:
        """Move items to a folder; a moved item gets a new id (returned)."""
        to = request.find(f"{{{M}}}ToFolderId")
        target = self.folder_of(to[0]) if to is not None and len(to) else None
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.get(item_id)
            if target is None:
                answers.append(
                    _error(
                        "MoveItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
            elif item is None:
                answers.append(_error("MoveItem", "ErrorItemNotFound", NOT_FOUND, "<m:Items/>"))
            else:
                del self.mailbox.items[item_id]
                moved = EwsItem(item.mime, item.received, target.id)
                self.mailbox.items[moved.id] = moved
                answers.append(_success("MoveItem", f"<m:Items>{_item_xml(moved, set())}</m:Items>"))
        return _response("MoveItem", answers)


# --- HTTP -------------------------------------------------------------------------------------------


class EwsServer:
    """The server: ``with EwsServer(mailbox) as server: server.url``; ``operations`` logs what was asked."""

    def __init__(
        self,
        mailbox: EwsMailbox,
        username: str = "CONTOSO\\helpdesk",
        password: str = "s3cret",
        certs: TestCertificates | None = None,
        authority: Authority | None = None,
    ) -> None:
        self.mailbox, self.username, self.password = mailbox, username, password
        self.authority = authority
        self.operations: list[str] = []
        self.requests: list[bytes] = []
        self.busy: dict[str, int] = {}  # operation -> how many of its next requests get ErrorServerBusy
        self._ops = EwsOperations(mailbox)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        scheme = "http"
        if certs is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certs.server_cert, certs.server_key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.base_url = f"{scheme}://localhost:{self._httpd.server_address[1]}"
        self.url = self.base_url + EWS_PATH
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> EwsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def authorised(self, header: str) -> bool:
        """Basic credentials match, or a bearer token the authority issued."""
        kind, _, value = header.partition(" ")
        if kind == "Basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.username, self.password)
        return kind == "Bearer" and self.authority is not None and self.authority.valid(value)

    def answer(self, body: bytes) -> bytes:
        """The SOAP response to one request body."""
        envelope = ET.fromstring(body)
        request = envelope.find(f"{{{SOAP}}}Body/*")
        if request is None or not request.tag.startswith(f"{{{M}}}"):
            raise SoapError("no EWS operation in the SOAP body")
        operation = request.tag.split("}")[1]
        self.operations.append(operation)
        self.requests.append(body)
        if self.busy.get(operation, 0) > 0:
            self.busy[operation] -= 1
            text = "The server cannot service this request right now. Try again later."
            back_off = '<m:MessageXml><t:Value Name="BackOffMilliseconds">1000</t:Value></m:MessageXml>'
            return _response(operation, [_error(operation, "ErrorServerBusy", text, back_off)])
        handler = getattr(self._ops, operation, None)
        if handler is None:
            raise SoapError(f"operation {operation} is not served by the test server")
        with self.mailbox.lock:
            response: bytes = handler(request)
        return response

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body are separate writes
            protocol_version = "HTTP/1.1"  # keep-alive: exchangelib reads "Connection: close" as server busy

            def log_message(self, format: str, *args: object) -> None:
                pass

            def reply(
                self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if server.authority is not None and server.authority.serves(self):
                    return
                self.reply(404, b"", "text/html")

            def do_POST(self) -> None:
                if server.authority is not None and server.authority.serves(self):
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != EWS_PATH:
                    self.reply(404, b"", "text/html")
                elif not server.authorised(self.headers.get("Authorization", "")):
                    self.reply(401, b"", "text/html", {"WWW-Authenticate": 'Basic realm="localhost"'})
                else:
                    try:
                        self.reply(200, server.answer(body), "text/xml; charset=utf-8")
                    except Exception as exc:  # a test server bug or an unserved request: a visible SOAP fault
                        self.reply(500, _fault(f"{type(exc).__name__}: {exc}"), "text/xml; charset=utf-8")

        return Handler


@contextmanager
def running_ews_server(mailbox: EwsMailbox, **kwargs: object) -> Iterator[EwsServer]:
    """An EwsServer started for the duration of the block."""
    with EwsServer(mailbox, **kwargs) as server:  # type: ignore[arg-type]
        yield server
