"""A loopback Microsoft Graph server (and its Entra ID authority), for the Graph connector tests.

The authority (``servers.entra.Authority``) shares the port. ``GraphServer`` answers the
Graph v1.0 mail calls the connector makes, as documented: message collections with
``@odata.nextLink`` paging, ``$value`` MIME, DELETE, ``move``, ``sendMail`` (MIME in base64) and
error bodies ``{"error": {"code", "message"}}``; a test can make it answer 429/503 with
Retry-After, or 403, for the next requests. HTTPS only (msal insists), on a throwaway CA.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from servers.entra import Authority, reply
from servers.tls import TestCertificates


@dataclass
class GraphMessage:
    """A message in a mail folder."""

    mime: bytes
    received: datetime
    folder: str
    id: str = field(default_factory=lambda: "AAMkAGI2" + base64.urlsafe_b64encode(os.urandom(45)).decode())


@dataclass
class GraphFolder:
    """A mail folder: id, display name and well-known name."""

    display_name: str
    well_known: str | None = None
    id: str = field(
        default_factory=lambda: "AAMkAGI2" + base64.urlsafe_b64encode(os.urandom(33)).decode() + "AAA="
    )


class GraphMailbox:
    """One user's mail folders and messages; tests deliver into it and look at what is left."""

    def __init__(self, upn: str) -> None:
        self.upn = upn
        self.lock = threading.Lock()
        self.folders = [
            GraphFolder("Inbox", "inbox"),
            GraphFolder("Deleted Items", "deleteditems"),
            GraphFolder("Archive", "archive"),
        ]
        self.messages: dict[str, GraphMessage] = {}
        self.sent: list[bytes] = []
        self.unknown_recipients: set[str] = set()  # addresses it cannot resolve: sendMail to one is refused
        self.deleted: list[bytes] = []  # soft-deleted (recoverable items)
        self._clock = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def folder(self, name: str) -> GraphFolder | None:
        """A folder by id or well-known name (case-insensitive, as Graph accepts them)."""
        return next((f for f in self.folders if f.id == name or (f.well_known or "") == name.lower()), None)

    def add_folder(self, display_name: str) -> GraphFolder:
        """A new user folder (Graph addresses it by id)."""
        with self.lock:
            folder = GraphFolder(display_name)
            self.folders.append(folder)
            return folder

    def deliver(self, raw: bytes, folder: str = "inbox") -> str:
        """Put a message in a folder (received a minute after the previous one); returns its id."""
        target = self.folder(folder)
        assert target is not None
        with self.lock:
            self._clock += timedelta(minutes=1)
            message = GraphMessage(raw, self._clock, target.id)
            self.messages[message.id] = message
            return message.id

    def in_folder(self, folder: str = "inbox") -> list[bytes]:
        """The messages of a folder, oldest first."""
        target = self.folder(folder)
        assert target is not None
        with self.lock:
            found = sorted(
                (m for m in self.messages.values() if m.folder == target.id), key=lambda m: m.received
            )
            return [m.mime for m in found]


class GraphServer:
    """Graph v1.0 plus the authority on one HTTPS port: ``with GraphServer(mailbox, certs) as server``.

    ``requests`` logs ``(method, path, bearer token)`` of every Graph call; ``fail_next`` holds
    responses ``(status, Retry-After or None, error code)`` to give to the next Graph calls.
    """

    def __init__(
        self, mailbox: GraphMailbox, certs: TestCertificates, authority: Authority | None = None
    ) -> None:
        self.mailbox = mailbox
        self.authority = authority or Authority()
        self.requests: list[tuple[str, str, str]] = []
        self.fail_next: deque[tuple[int, str | None, str]] = deque()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs.server_cert, certs.server_key)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.base_url = f"https://localhost:{self._httpd.server_address[1]}"
        self.authority.base_url = self.base_url
        self.graph_url = self.base_url + "/v1.0"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> GraphServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def calls(self, method: str, fragment: str = "") -> int:
        """How many Graph calls with that method (and path containing ``fragment``) were made."""
        return sum(1 for m, path, _ in self.requests if m == method and fragment in path)

    # --- Graph -----------------------------------------------------------------------------------

    def graph(
        self, method: str, target: str, body: bytes, token: str, content_type: str = ""
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """Answer one Graph call: (status, body, content type, extra headers)."""
        url = urlsplit(target)
        self.requests.append((method, url.path, token))
        if not self.authority.valid(token):
            return _error(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        if self.fail_next:
            status, retry_after, code = self.fail_next.popleft()
            headers = {"Retry-After": retry_after} if retry_after else {}
            return _error(
                status,
                code,
                "The request has been throttled." if status == 429 else "Service unavailable.",
                headers,
            )
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] != ["v1.0", "users"] or len(parts) < 4:
            return _error(400, "BadRequest", f"Resource not found for the segment '{'/'.join(parts[1:3])}'.")
        if parts[2].lower() != self.mailbox.upn.lower():
            return _error(404, "ErrorInvalidUser", f"The requested user '{parts[2]}' is invalid.")
        with self.mailbox.lock:
            return self._mail(method, parts[3:], parse_qs(url.query), body, content_type)

    def _mail(
        self, method: str, rest: list[str], query: dict[str, list[str]], body: bytes, content_type: str
    ) -> tuple[int, bytes, str, dict[str, str]]:
        box = self.mailbox
        if method == "POST" and rest == ["sendMail"]:
            if not content_type.startswith("text/plain"):
                return _error(400, "ErrorInvalidRequest", "JSON messages are not served by the test server.")
            try:
                mime = base64.b64decode(body, validate=True)
            except ValueError:
                return _error(
                    400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
                )
            if _recipients(mime) & {a.lower() for a in box.unknown_recipients}:
                return _error(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
            box.sent.append(mime)
            return 202, b"", "text/plain", {"request-id": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"}
        if rest[0] == "mailFolders" and len(rest) >= 2:
            folder = box.folder(rest[1])
            if folder is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if len(rest) == 2 and method == "GET":
                return _json(200, self._folder_json(folder))
            if rest[2:] == ["messages"] and method == "GET":
                return _json(200, self._page(folder, query))
        if rest[0] == "messages" and len(rest) >= 2:
            message = box.messages.get(rest[1])
            if message is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if rest[2:] == ["$value"] and method == "GET":
                return 200, message.mime, "text/plain", {}
            if len(rest) == 2 and method == "DELETE":  # soft delete: to the recoverable items
                del box.messages[message.id]
                box.deleted.append(message.mime)
                return 204, b"", "", {}
            if rest[2:] == ["permanentDelete"] and method == "POST":
                del box.messages[message.id]
                return 204, b"", "", {}
            if rest[2:] == ["move"] and method == "POST":
                destination = box.folder(str(json.loads(body).get("destinationId", "")))
                if destination is None:
                    return _error(
                        404, "ErrorItemNotFound", "The specified object was not found in the store."
                    )
                del box.messages[message.id]
                moved = GraphMessage(message.mime, message.received, destination.id)
                box.messages[moved.id] = moved
                return _json(201, {"id": moved.id, "parentFolderId": destination.id})
        return _error(400, "BadRequest", "Unsupported request.")

    @property
    def _metadata(self) -> str:
        return f"{self.graph_url}/$metadata#users('{quote(self.mailbox.upn)}')"

    def _folder_json(self, folder: GraphFolder) -> dict[str, Any]:
        count = sum(1 for m in self.mailbox.messages.values() if m.folder == folder.id)
        return {
            "@odata.context": f"{self._metadata}/mailFolders/$entity",
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": "AAMkAGI2root",
            "childFolderCount": 0,
            "unreadItemCount": 0,
            "totalItemCount": count,
            "sizeInBytes": sum(len(m.mime) for m in self.mailbox.messages.values() if m.folder == folder.id),
            "isHidden": False,
        }

    def _page(self, folder: GraphFolder, query: dict[str, list[str]]) -> dict[str, Any]:
        order = query.get("$orderby", ["receivedDateTime desc"])[0]
        if order not in ("receivedDateTime asc", "receivedDateTime desc"):
            raise ValueError(f"unsupported $orderby {order!r}")
        top = int(query.get("$top", ["10"])[0])
        skip = int(query.get("$skip", ["0"])[0])
        selected = query.get("$select", ["id,receivedDateTime,subject"])[0].split(",")
        found = sorted(
            (m for m in self.mailbox.messages.values() if m.folder == folder.id), key=lambda m: m.received
        )
        if order.endswith("desc"):
            found.reverse()
        page = found[skip : skip + top]
        values = []
        for m in page:
            full = {"id": m.id, "receivedDateTime": m.received.strftime("%Y-%m-%dT%H:%M:%SZ"), "subject": ""}
            values.append({"@odata.etag": 'W/"CQAAABYAAAA"'} | {k: full[k] for k in selected if k in full})
        result: dict[str, Any] = {
            "@odata.context": f"{self._metadata}/mailFolders('{folder.id}')/messages({','.join(selected)})",
            "value": values,
        }
        if skip + top < len(found):
            result["@odata.nextLink"] = (
                f"{self.graph_url}/users/{quote(self.mailbox.upn)}/mailFolders/{quote(folder.id)}/messages"
                f"?%24select={quote(','.join(selected))}&%24orderby={quote(order)}"
                f"&%24top={top}&%24skip={skip + top}"
            )
        return result

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body are separate writes
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_graph(self) -> None:
                if server.authority.serves(self):
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not self.path.startswith("/v1.0/"):
                    reply(self, 404, b"", "text/html")
                    return
                kind, _, token = self.headers.get("Authorization", "").partition(" ")
                status, payload, content_type, headers = server.graph(
                    self.command,
                    self.path,
                    body,
                    token if kind == "Bearer" else "",
                    self.headers.get("Content-Type", ""),
                )
                reply(self, status, payload, content_type, headers)

            do_GET = do_POST = do_DELETE = handle_graph

        return Handler


def _json(status: int, payload: dict[str, Any]) -> tuple[int, bytes, str, dict[str, str]]:
    return (
        status,
        json.dumps(payload).encode(),
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        {},
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str, dict[str, str]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {
        "date": now,
        "request-id": "4f2d1c3b-5a6e-4b7c-8d9e-0f1a2b3c4d5e",
        "client-request-id": "4f2d1c3b-5a6e-4b7c-8d9e-0f1a2b3c4d5e",
    }
    payload = {"error": {"code": code, "message": message, "innerError": inner}}
    return status, json.dumps(payload).encode(), "application/json", headers or {}


def _recipients(mime: bytes) -> set[str]:
    """The addresses in a message's To, Cc and Bcc, lower-cased (Graph sends to these)."""
    headers = BytesHeaderParser().parsebytes(mime)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
    return {address.lower() for _, address in getaddresses(fields) if address}
