"""One IMAP conversation over aioimaplib: TLS or STARTTLS, LOGIN or XOAUTH2, commands with failures mapped.

aioimaplib's protocol object does the parsing; this module opens the connection itself (so that
STARTTLS, a connect timeout and certificate errors can be handled), answers SASL continuations
(an XOAUTH2 failure arrives as a base64 JSON challenge that the client must acknowledge), and runs
every command against two limits: the connector's timeout and the connection being lost. Any
failure becomes a ``ConnectorError`` naming the account and server; once a command has failed the
session is dropped (the service reconnects), so no reply can be matched to the wrong command.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable
from typing import Any, NoReturn, TypeVar

from aioimaplib.aioimaplib import (  # type: ignore[import-untyped]
    AioImapException,
    Command,
    IMAP4ClientProtocol,
    Response,
    quoted,
)

from connectors.base import AuthenticationError, ConnectorError
from connectors.imap.reader import CountingFetchCommand, read_responses
from connectors.imap.wire import response_text, xoauth2_initial_response
from connectors.port_mismatch import foreign_greeting, not_tls, silent_greeting

log = logging.getLogger(__name__)

T = TypeVar("T")
CLOSE_TIMEOUT = 5.0


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, answering continuation requests during AUTHENTICATE, read in linear time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Any) -> None:
        super().__init__(loop, on_lost)
        self.sasl_responses: list[bytes] = []
        self.sasl_challenges: list[bytes] = []
        self._first: bytearray | None = bytearray()  # the server's first line, until it is complete
        # done with the explanation when that line is another protocol's greeting (a POP3 port?)
        self.foreign: asyncio.Future[str] = loop.create_future()

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            if self.sasl_responses:
                self.transport.write(self.sasl_responses.pop(0) + b"\r\n")
            else:  # a failure report (RFC 7628): an empty response ends the exchange
                self.sasl_challenges.append(line[1:].strip())
                self.transport.write(b"\r\n")
            return
        super()._continuation(line)

    def data_received(self, d: bytes) -> None:
        if self.foreign.done():
            return  # not an IMAP server: nothing it says can be parsed
        if self._first is not None:
            self._first += d
            if b"\n" not in self._first and len(self._first) < 1024:
                return
            first, self._first = bytes(self._first), None
            explanation = foreign_greeting("IMAP", first.split(b"\n", 1)[0])
            if explanation is not None:
                self.foreign.set_result(explanation)
                return
            d = first
        read_responses(self, d)

    async def fetch(
        self, message_set: str, message_parts: str, by_uid: bool = False, timeout: float | None = None
    ) -> Response:
        command = CountingFetchCommand(
            self.new_tag(),
            message_set,
            message_parts,
            prefix="UID" if by_uid else "",
            loop=self.loop,
            timeout=timeout,
        )
        return await self.execute(command)


class ImapSession:
    """A connected (and, after ``login``/``xoauth2``, authenticated) IMAP session."""

    def __init__(self, where: str, host: str, port: int, timeout: float) -> None:
        self.where = where
        self.host = host
        self.port = port
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._lost: asyncio.Future[str] | None = None
        self._done_sent_for: str | None = None  # tag of the IDLE command already ended with DONE

    # --- opening -----------------------------------------------------------------------------------

    async def open(self, security: str, context: ssl.SSLContext) -> None:
        """Connect (implicit TLS for ``tls``), read the greeting, and upgrade with STARTTLS if asked."""
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        protocol = _Protocol(loop, self._on_lost)
        tls = context if security == "tls" else None
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: protocol,
                    self.host,
                    self.port,
                    ssl=tls,
                    server_hostname=self.host if tls else None,
                ),
                self.timeout,
            )
        except TimeoutError:
            raise ConnectorError(f"{self.where}: no connection within {self.timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise self._untrusted(exc) from None
        except (OSError, ssl.SSLError) as exc:
            advice = not_tls(exc, "`security: starttls` or `plain`")
            raise ConnectorError(f"{self.where}: cannot connect: {advice or _reason(exc)}") from None
        self._protocol, self._transport = protocol, transport
        await self._greeting(protocol, security)
        if security == "starttls":
            await self._starttls(context)

    async def _greeting(self, protocol: _Protocol, security: str) -> None:
        """Wait for the greeting; another protocol's, or none at all, is explained (port_mismatch.py)."""
        assert self._lost is not None
        greeted = asyncio.ensure_future(protocol.wait("AUTH|NONAUTH"))
        waiting: set[asyncio.Future[Any]] = {greeted, protocol.foreign, self._lost}
        done, _ = await asyncio.wait(waiting, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        if greeted not in done:
            greeted.cancel()
            self.abort()
            if protocol.foreign in done:
                self.fail(protocol.foreign.result())
            if self._lost in done:
                self.fail(f"connection lost during the server's greeting{self._lost.result()}")
            if security != "tls":
                self.fail(silent_greeting("IMAP", self.timeout, "tls"))
            self.fail(f"no answer to the server's greeting within {self.timeout:g} s")
        await self.run(greeted, "the server's greeting")

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self.protocol
        if "STARTTLS" not in self.capabilities:
            self.fail("the server does not offer STARTTLS (use security: tls, or plain on a trusted network)")
        command = Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        self.check(await self.run(protocol.execute(command), "STARTTLS"), "STARTTLS")
        if protocol.incomplete_line:  # bytes sent before the handshake would be unauthenticated
            self.fail("the server sent data after accepting STARTTLS; refusing the session")
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(self._transport, protocol, context, server_hostname=self.host),  # type: ignore[arg-type]
                self.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            self.abort()
            raise self._untrusted(exc) from None
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.abort()
            raise ConnectorError(f"{self.where}: the STARTTLS handshake failed: {_reason(exc)}") from None
        self._transport = protocol.transport = transport
        await self.run(protocol.capability(), "CAPABILITY")  # RFC 3501: forget what was said in clear

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> ConnectorError:
        return ConnectorError(
            f"{self.where}: the server's TLS certificate is not trusted ({exc.verify_message or exc}); "
            "give its CA with ca_file if it is a private one"
        )

    # --- authenticating ----------------------------------------------------------------------------

    async def login(self, user: str, password: str) -> None:
        """LOGIN; refused credentials raise ``AuthenticationError``."""
        protocol = self.protocol
        if "LOGINDISABLED" in self.capabilities:
            raise AuthenticationError(
                f"{self.where}: the server refuses LOGIN on this connection (LOGINDISABLED); "
                "use security: starttls or tls"
            )
        response = await self.run(protocol.login(quoted(user), password), "LOGIN")
        if response.result != "OK":
            raise AuthenticationError(f"{self.where}: login refused for {user!r}: {response_text(response)}")
        await self.run(protocol.capability(), "CAPABILITY")

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTHENTICATE XOAUTH2 with a bearer token; a refused token raises ``AuthenticationError``."""
        protocol = self.protocol
        if "AUTH=XOAUTH2" not in self.capabilities:
            offered = sorted(c[5:] for c in self.capabilities if c.startswith("AUTH="))
            raise AuthenticationError(
                f"{self.where}: the server does not offer XOAUTH2 (offers: {', '.join(offered) or 'none'})"
            )
        initial = xoauth2_initial_response(user, token)
        args = ["XOAUTH2"]
        if "SASL-IR" in self.capabilities:
            args.append(initial.decode("ascii"))
        else:
            protocol.sasl_responses = [initial]
        protocol.sasl_challenges = []
        command = Command("AUTHENTICATE", protocol.new_tag(), *args, loop=protocol.loop)
        response = await self.run(protocol.execute(command, scrub=token), "AUTHENTICATE XOAUTH2")
        protocol.sasl_responses = []
        if response.result != "OK":
            detail = "".join(f" {_decoded_challenge(c)}" for c in protocol.sasl_challenges)
            raise AuthenticationError(
                f"{self.where}: XOAUTH2 token refused for {user!r}: {response_text(response)}{detail}"
            )
        protocol.state = "AUTH"
        await self.run(protocol.capability(), "CAPABILITY")

    # --- running commands --------------------------------------------------------------------------

    @property
    def protocol(self) -> _Protocol:
        """The live protocol (``ConnectorError`` once the session is gone)."""
        if self._protocol is None:
            raise ConnectorError(f"{self.where}: not connected")
        return self._protocol

    @property
    def capabilities(self) -> set[str]:
        """What the server advertised, upper-cased."""
        return {str(c).upper() for c in self.protocol.capabilities}

    async def run(self, awaitable: Awaitable[T], what: str, timeout: float | None = -1.0) -> T:
        """Await one command, failing with ``ConnectorError`` on error, loss or timeout.

        ``timeout``: -1 means the session's, None means no limit (the command's own timer only).
        """
        if self._lost is None or self._protocol is None:
            raise ConnectorError(f"{self.where}: not connected")
        limit = self.timeout if timeout == -1.0 else timeout
        task = asyncio.ensure_future(awaitable)
        waiting: set[asyncio.Future[Any]] = {task, self._lost}
        try:
            done, _ = await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task not in done:
            task.cancel()
            if self._lost.done():
                reason = self._lost.result()
                self.abort()
                self.fail(f"connection lost during {what}{reason}")
            self.abort()
            self.fail(f"no answer to {what} within {limit:g} s")
        try:
            return task.result()
        except (AioImapException, OSError, ssl.SSLError, ValueError, RuntimeError) as exc:
            self.abort()
            self.fail(f"{what} failed: {_reason(exc) if str(exc) else 'no answer in time'}")

    def check(self, response: Response, what: str) -> Response:
        """The response if it is OK, else ``ConnectorError`` with the server's text."""
        if response.result != "OK":
            self.fail(f"{what} refused: {response_text(response)}")
        return response

    def fail(self, message: str) -> NoReturn:
        """Raise ``ConnectorError`` about this session."""
        raise ConnectorError(f"{self.where}: {message}")

    @property
    def lost(self) -> asyncio.Future[str]:
        """Done (with a reason) once the connection is gone."""
        if self._lost is None:
            raise ConnectorError(f"{self.where}: not connected")
        return self._lost

    def _on_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(f": {_reason(exc)}" if exc else "")

    def end_idle(self) -> None:
        """Send DONE for the running IDLE command, once (a second DONE would be a bad command)."""
        protocol = self._protocol
        if protocol is None:
            return
        command = protocol.pending_sync_command
        if command is None or command.name != "IDLE" or command.tag == self._done_sent_for:
            return
        self._done_sent_for = command.tag
        with contextlib.suppress(Exception):  # the connection may be gone: the next command will say so
            protocol.idle_done()

    # --- closing -----------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection at once (after a failure; nothing more is sent)."""
        if self._transport is not None:
            self._transport.abort()
        self._transport = None
        self._protocol = None

    async def close(self) -> None:
        """End IDLE if one is running, LOGOUT briefly, and close; never raises."""
        protocol = self._protocol
        if protocol is None:
            return
        try:
            self.end_idle()
            if self._lost is not None and not self._lost.done():
                await asyncio.wait_for(protocol.logout(), min(self.timeout, CLOSE_TIMEOUT))
        except Exception as exc:  # a failing goodbye must not hide why we are closing
            log.debug("%s: LOGOUT failed: %s", self.where, _reason(exc))
        finally:
            with contextlib.suppress(Exception):
                if self._transport is not None:
                    self._transport.close()
            self._transport = None
            self._protocol = None


def _decoded_challenge(challenge: bytes) -> str:
    try:
        return base64.b64decode(challenge, validate=True).decode("utf-8", "replace")
    except ValueError:
        return challenge.decode("ascii", "replace")


def _reason(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text or type(exc).__name__
