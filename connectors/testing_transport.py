"""The conformance suite every outgoing transport must pass, shipped with mailgate for integrators' tests too.

Subclass ``TransportConformance`` in a pytest test module (name the subclass ``Test...``) and supply
its hooks; every ``test_*`` method below then runs against your transport and a real server::

    class TestMyTransport(TransportConformance):
        @pytest.fixture(autouse=True)
        def _server(self, ...): ...                     # each test starts with a server that got nothing

        def make_transport(self) -> Transport: ...      # a new transport sending to that server
        def make_unreachable_transport(self) -> Transport: ...  # one whose server refuses connections
        def received(self) -> list[Received]: ...       # what the server accepted, in order
        def refuse_recipient(self, address: str) -> None: ...   # the server refuses mail to address

Class attributes say what the protocol does: ``refusal_code`` is the code a refused recipient's
``SendError`` carries (SMTP: 550); where the protocol has no such codes it is None, and the
transport must then mark the refusal ``permanent`` itself. ``sender`` is the address messages
come from (a server may accept only its own mailbox). ``sessions_used`` may report how many
sessions the received messages came through, so that reuse of one session is checked. The tests
are synchronous methods running the transport with ``asyncio.run``; this module does not import
pytest.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from connectors.base import Envelope, SendError, Transport

_serial = itertools.count(1)


@dataclass(frozen=True)
class Received:
    """One message as the server accepted it: its bytes and its recipients.

    ``recipients`` are the envelope recipients where the protocol has an envelope (SMTP), else the
    addresses the server took from the message's To, Cc and Bcc.
    """

    data: bytes
    recipients: tuple[str, ...]


def outgoing_message(sender: str, to: str, subject: str) -> bytes:
    """A small CRLF message from ``sender`` to ``to`` with a unique Message-ID.

    Its body has a line starting with a dot and a line with trailing spaces, which SMTP must carry
    unchanged (dot-stuffing).
    """
    token = f"{os.getpid()}.{next(_serial)}.{os.urandom(4).hex()}"
    return (
        f"From: Desk <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{token}@conformance.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
        f"{subject}\r\n.a line starting with a dot\r\ntrailing spaces   \r\n-- \r\nDesk\r\n"
    ).encode()


def unused_port() -> int:
    """A loopback TCP port nothing listens on (just released by the OS), for an unreachable server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TransportConformance:
    """The behaviour every transport owes the delivery; subclasses supply the hooks.

    Contract for the hooks: each test starts with a server that has received nothing;
    ``make_transport`` returns a new transport (not yet connected) for it each time it is called;
    ``make_unreachable_transport`` one whose server refuses the connection; ``received`` lists what
    the server accepted, read without the transport; ``refuse_recipient`` makes the server refuse
    every message to that address from now on, as it refuses an unknown mailbox.
    """

    refusal_code: ClassVar[int | None] = None
    sender: ClassVar[str] = "helpdesk@example.com"

    # ---- hooks -------------------------------------------------------------------------------------

    def make_transport(self) -> Transport:
        """A new, unconnected transport sending to the test's server."""
        raise NotImplementedError

    def make_unreachable_transport(self) -> Transport:
        """A new transport whose server refuses connections (e.g. a port from ``unused_port``)."""
        raise NotImplementedError

    def received(self) -> list[Received]:
        """What the server accepted, oldest first."""
        raise NotImplementedError

    def refuse_recipient(self, address: str) -> None:
        """Make the server refuse messages to ``address``."""
        raise NotImplementedError

    def sessions_used(self) -> int | None:
        """How many sessions the received messages came through (None: the server cannot tell)."""
        return None

    # ---- helpers -----------------------------------------------------------------------------------

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run one async scenario to completion."""

        async def main() -> None:
            await scenario()

        asyncio.run(main())

    def envelope(self, to: str, subject: str) -> Envelope:
        """The envelope the delivery would hand over for a new message to ``to``."""
        data = outgoing_message(self.sender, to, subject)
        message_id = data.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        return Envelope(self.sender, to, data, message_id)

    def assert_received(self, *envelopes: Envelope) -> None:
        """The server holds exactly these messages, in order, byte for byte, each to its recipient."""
        got = [(r.data, tuple(a.lower() for a in r.recipients)) for r in self.received()]
        assert got == [(e.data, (e.recipient.lower(),)) for e in envelopes]

    # ---- the suite ---------------------------------------------------------------------------------

    def test_a_message_arrives_with_exactly_its_bytes_and_recipient(self) -> None:
        """``send`` returns the server's reply; the server holds the very bytes, for the recipient."""
        envelope = self.envelope("ada@example.com", "exact bytes")

        async def scenario() -> None:
            transport = self.make_transport()
            try:
                reply = await transport.send(envelope)
            finally:
                await transport.close()
            assert isinstance(reply, str) and reply.strip(), "send must return the server's reply"

        self.run(scenario)
        self.assert_received(envelope)

    def test_two_messages_go_out_in_order_through_one_session(self) -> None:
        """A transport keeps its session: the second message reuses what the first opened."""
        first = self.envelope("ada@example.com", "first")
        second = self.envelope("grace@example.com", "second")

        async def scenario() -> None:
            transport = self.make_transport()
            try:
                await transport.send(first)
                await transport.send(second)
            finally:
                await transport.close()

        self.run(scenario)
        self.assert_received(first, second)
        assert self.sessions_used() in (None, 1), "the second message opened a new session"

    def test_a_refused_recipient_is_a_send_error_and_the_next_message_goes(self) -> None:
        """A refusal of the message raises SendError (with the code, or permanent); the session goes on."""
        self.refuse_recipient("nobody@example.com")
        refused = self.envelope("nobody@example.com", "to nobody")
        accepted = self.envelope("ada@example.com", "to ada")

        async def scenario() -> None:
            transport = self.make_transport()
            try:
                try:
                    await transport.send(refused)
                except SendError as exc:
                    assert not exc.connection, "a refused recipient is not a failure of the server"
                    assert exc.code == self.refusal_code
                    assert exc.code is not None or exc.permanent, "without a code, say permanent"
                else:
                    raise AssertionError("the refused recipient raised no SendError")
                await transport.send(accepted)
            finally:
                await transport.close()

        self.run(scenario)
        self.assert_received(accepted)

    def test_a_server_that_refuses_connections_is_a_connection_send_error(self) -> None:
        """Cannot connect: SendError marked ``connection`` (the other messages wait), and close is fine."""
        envelope = self.envelope("ada@example.com", "nowhere")

        async def scenario() -> None:
            transport = self.make_unreachable_transport()
            try:
                await transport.send(envelope)
            except SendError as exc:
                assert exc.connection, f"not marked as a failure of the server: {exc}"
            else:
                raise AssertionError("sending to an unreachable server raised no SendError")
            finally:
                await transport.close()

        self.run(scenario)

    def test_close_never_raises_and_may_be_repeated(self) -> None:
        """Closing before any send, after a send, and twice, raises nothing."""
        envelope = self.envelope("ada@example.com", "then close")

        async def scenario() -> None:
            await self.make_transport().close()
            transport = self.make_transport()
            await transport.send(envelope)
            await transport.close()
            await transport.close()

        self.run(scenario)
        self.assert_received(envelope)
