"""A real SMTP server on loopback for the outgoing-mail tests (aiosmtpd, in its own thread and event loop).

``start_smtp_server(...)`` listens on a free port of 127.0.0.1 (or on a given one), optionally with
STARTTLS or implicit TLS and with AUTH. Its :class:`RecordingHandler` records every message that
arrives and can answer chosen recipients with 4xx/5xx replies, one reply per attempt.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass(frozen=True)
class Arrival:
    """One message as the server received it: envelope, raw bytes, parsed, and who logged in."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None
    peer: str = ""  # the client's address and port: messages with the same peer came on one connection

    @property
    def message(self) -> EmailMessage:
        """The received bytes parsed with the modern email API."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def part(self, subtype: str) -> str:
        """The decoded text of the text/``subtype`` part (line ends as ``\\n``; on the wire they are CRLF)."""
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None and found.get_content_type() == f"text/{subtype}", subtype
        content = found.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")


@dataclass
class RecordingHandler:
    """Accepts mail and records it; ``answers[recipient]`` lists replies to give at RCPT, one per try."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    arrived: list[Arrival] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, login)
    valid_token: str | None = None  # the XOAUTH2 bearer token this server accepts

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Refuse the recipient with the next scripted reply, if any; else accept it."""
        scripted = self.answers.get(address.lower())
        if scripted:
            return scripted.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        """Record the message."""
        data = envelope.original_content or envelope.content
        login = session.login_data.decode() if isinstance(session.login_data, bytes) else session.login_data
        peer = str(session.peer)
        self.arrived.append(Arrival(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(data), login, peer))
        return f"250 2.0.0 Ok: queued as Q{len(self.arrived)}"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 (``user=...^Aauth=Bearer ...^A^A``), accepting only ``valid_token``."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        fields = base64.b64decode(args[1]).decode().split("\x01")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        user, token = values.get("user", ""), values.get("auth", "").removeprefix("Bearer ")
        if self.valid_token is None or token != self.valid_token:
            return AuthResult(success=False, handled=False, message="535 5.7.8 token rejected")
        self.logins.append(("XOAUTH2", user))
        return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))


def password_authenticator(
    handler: RecordingHandler, users: dict[str, str]
) -> Callable[[SMTP, Any, Any, str, Any], AuthResult]:
    """An aiosmtpd authenticator for LOGIN/PLAIN accepting ``users`` (login -> password)."""

    def authenticate(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        if users.get(login) != password:
            return AuthResult(success=False, handled=False)
        handler.logins.append((mechanism, login))
        return AuthResult(success=True, auth_data=data)

    return authenticate


class SmtpServer:
    """A running server: ``host``, ``port``, ``handler``; ``stop()`` ends it."""

    def __init__(self, handler: RecordingHandler, port: int, **smtp_options: Any) -> None:
        self.handler = handler
        self.host = "127.0.0.1"
        self._options = smtp_options
        self._implicit_tls: ssl.SSLContext | None = smtp_options.pop("implicit_tls", None)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-test-server", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(port), self._loop).result(timeout=30)
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _listen(self, port: int) -> asyncio.AbstractServer:
        def protocol() -> SMTP:
            return SMTP(self.handler, hostname="localhost", loop=self._loop, **self._options)

        return await self._loop.create_server(protocol, self.host, port, ssl=self._implicit_tls)

    def stop(self) -> None:
        """Close the listener and the loop (open sessions are dropped)."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server side of TLS: our throwaway certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
