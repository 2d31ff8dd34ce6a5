"""A loopback Exchange Web Services server holding one in-memory mailbox, for the EWS connector tests.

It answers the SOAP requests exchangelib sends for what mailgate does (``servers.ews_soap``):
``ConvertId`` (exchangelib's version probe, answered with an error message as Exchange does for its
dummy id), ``GetFolder``, ``FindFolder`` (a display-name restriction), ``FindItem`` (indexed paging,
sorted), ``GetItem`` (``MimeContent``), ``DeleteItem`` (the three delete types), ``MoveItem``, and
``CreateItem`` sending a ``MimeContent`` message (``SendOnly`` or ``SendAndSaveCopy``; what was
sent is in ``mailbox.sent``).

Authentication is HTTP Basic (a wrong password gets 401, as IIS answers) or a bearer token issued
by the test authority (``servers.entra.Authority``) served on the same port. HTTPS with a throwaway
CA when ``certs`` is given. Connections are kept alive: exchangelib reads ``Connection: close`` as
"server busy".
"""

from __future__ import annotations

import base64
import ssl
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from servers.entra import Authority
from servers.ews_mailbox import EwsFolder, EwsItem, EwsMailbox
from servers.ews_soap import SOAP, EwsOperations, M, SoapError, error_message, fault, response
from servers.tls import TestCertificates

__all__ = ["EwsFolder", "EwsItem", "EwsMailbox", "EwsServer"]

EWS_PATH = "/EWS/Exchange.asmx"


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
            return response(operation, [error_message(operation, "ErrorServerBusy", text, back_off)])
        handler = getattr(self._ops, operation, None)
        if handler is None:
            raise SoapError(f"operation {operation} is not served by the test server")
        with self.mailbox.lock:
            answered: bytes = handler(request)
        return answered

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
                        self.reply(500, fault(f"{type(exc).__name__}: {exc}"), "text/xml; charset=utf-8")

        return Handler
