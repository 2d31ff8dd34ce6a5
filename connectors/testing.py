"""The conformance suite every connector must pass, shipped with mailgate for integrators' tests too.

Subclass ``ConnectorConformance`` in a pytest test module (name the subclass ``Test...``) and supply
three hooks; every ``test_*`` method below then runs against your connector and a real mailbox::

    class TestMyConnector(ConnectorConformance):
        @pytest.fixture(autouse=True)
        def _empty_mailbox(self, tmp_path): ...          # each test starts with an empty mailbox

        def make_connector(self) -> Connector: ...       # a new, unconnected connector for it
        def deliver(self, raw: bytes) -> None: ...       # put a message into the real mailbox
        def remaining(self) -> int: ...                  # how many messages the mailbox still holds

Class attributes declare what the protocol cannot do: ``preserves_bytes = False`` where the server
rewrites line endings (then messages are compared by Message-ID and decoded body), and
``sees_new_mail_in_session = False`` where a session shows a snapshot (POP3), so a message delivered
after listing is expected only after reconnecting. The tests are synchronous methods that run the
connector with ``asyncio.run``, so no pytest plugin is needed; this module does not import pytest.
"""

from __future__ import annotations

import asyncio
import base64
import email
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import Message
from typing import ClassVar

from connectors.base import Connector, MessageRef

LARGE_MESSAGE_BYTES = 5 * 1024 * 1024
_serial = itertools.count(1)


def make_message(subject: str, body: str = "Hello,\r\nplease help.\r\n", *, eight_bit: bool = False) -> bytes:
    """A small CRLF message with a unique Message-ID (its subject repeated in the body)."""
    token = f"{os.getpid()}.{next(_serial)}.{os.urandom(4).hex()}"
    encoding = "8bit" if eight_bit else "7bit"
    head = (
        f"From: Ada Lovelace <ada@example.com>\r\nTo: helpdesk@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{token}@conformance.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return (head + f"{subject}\r\n{body}").encode("utf-8")


def make_large_message(size: int = LARGE_MESSAGE_BYTES) -> bytes:
    """A message carrying a base64 attachment of ``size`` pseudo-random bytes."""
    data = (os.urandom(64 * 1024) * (size // (64 * 1024) + 1))[:size]
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = make_message("large attachment").split(b"Content-Type:")[0]
    return (
        head + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + encoded
        + b"--b1--\r\n"
    )


def message_id(raw: bytes) -> str:
    """The Message-ID header of raw bytes (empty if missing)."""
    return str(email.message_from_bytes(raw).get("Message-ID", ""))


def decoded_parts(raw: bytes) -> list[bytes]:
    """Every leaf part's decoded payload, with line endings made LF and trailing blank lines removed."""
    parsed: Message = email.message_from_bytes(raw)
    parts = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts.append(data.replace(b"\r\n", b"\n").rstrip(b"\n"))
    return parts


class ConnectorConformance:
    """The behaviour every connector owes the service; subclasses supply the three hooks.

    Contract for the hooks: each test starts with an empty mailbox; ``make_connector`` returns a new
    connector (not connected) for that mailbox each time it is called; ``deliver`` puts a message
    into the real mailbox (oldest first in call order); ``remaining`` counts what the mailbox holds,
    read without the connector under test.
    """

    preserves_bytes: ClassVar[bool] = True
    sees_new_mail_in_session: ClassVar[bool] = True

    # ---- hooks -------------------------------------------------------------------------------------

    def make_connector(self) -> Connector:
        """A new, unconnected connector reading the test's mailbox."""
        raise NotImplementedError

    def deliver(self, raw: bytes) -> None:
        """Put one message into the real mailbox."""
        raise NotImplementedError

    def remaining(self) -> int:
        """How many messages the real mailbox still holds."""
        raise NotImplementedError

    # ---- helpers -----------------------------------------------------------------------------------

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run one async scenario to completion."""

        async def main() -> None:
            await scenario()

        asyncio.run(main())

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Connector]:
        """A connected connector, closed afterwards."""
        connector = self.make_connector()
        await connector.connect()
        try:
            yield connector
        finally:
            await connector.close()

    def assert_same_message(self, fetched: bytes, delivered: bytes) -> None:
        """Exact bytes where the protocol keeps them, else the same Message-ID and decoded content."""
        if self.preserves_bytes:
            assert fetched == delivered, "fetch changed the message's bytes"
            return
        assert message_id(fetched) == message_id(delivered), "fetch returned another message"
        assert decoded_parts(fetched) == decoded_parts(delivered), "fetch changed the message's content"

    async def fetch_ids(self, connector: Connector, refs: list[MessageRef]) -> list[str]:
        """The Message-IDs of the listed messages, in listing order."""
        return [message_id(await connector.fetch(ref)) for ref in refs]

    # ---- the suite ---------------------------------------------------------------------------------

    def test_an_empty_mailbox_lists_nothing(self) -> None:
        """An empty mailbox lists no message."""

        async def scenario() -> None:
            async with self.session() as connector:
                assert await connector.list_waiting() == []

        self.run(scenario)

    def test_messages_are_listed_oldest_first_with_distinct_ids(self) -> None:
        """Delivered messages are listed in delivery order, each with its own id."""

        messages = [make_message(f"message {n}") for n in range(1, 4)]
        for raw in messages:
            self.deliver(raw)

        async def scenario() -> None:
            async with self.session() as connector:
                refs = await connector.list_waiting()
                assert len({ref.id for ref in refs}) == len(refs) == 3
                assert await self.fetch_ids(connector, refs) == [message_id(raw) for raw in messages]

        self.run(scenario)

    def test_fetch_returns_the_message_unmodified(self) -> None:
        """Fetch returns what was delivered (exact bytes where the protocol keeps them)."""

        delivered = make_message("exact bytes", "line one\r\n\r\n  indented line\r\nlast line\r\n")
        self.deliver(delivered)

        async def scenario() -> None:
            async with self.session() as connector:
                (ref,) = await connector.list_waiting()
                self.assert_same_message(await connector.fetch(ref), delivered)

        self.run(scenario)

    def test_ids_are_stable_across_reconnects(self) -> None:
        """A message keeps its id in a new session, and the old ref still fetches it."""

        messages = [make_message(f"stable {n}") for n in range(1, 3)]
        for raw in messages:
            self.deliver(raw)

        async def scenario() -> None:
            async with self.session() as first:
                before = await first.list_waiting()
            async with self.session() as second:
                after = await second.list_waiting()
                assert [ref.id for ref in after] == [ref.id for ref in before]
                assert await self.fetch_ids(second, before) == [message_id(raw) for raw in messages]

        self.run(scenario)

    def test_acknowledge_removes_exactly_that_message(self) -> None:
        """Acknowledging removes that message only, and it stays gone after reconnecting."""

        messages = [make_message(f"ack {n}") for n in range(1, 4)]
        for raw in messages:
            self.deliver(raw)
        kept = [message_id(messages[0]), message_id(messages[2])]

        async def scenario() -> None:
            async with self.session() as connector:
                refs = await connector.list_waiting()
                assert await connector.fetch(refs[1])
                await connector.acknowledge(refs[1])
            assert self.remaining() == 2
            async with self.session() as connector:
                assert await self.fetch_ids(connector, await connector.list_waiting()) == kept

        self.run(scenario)

    def test_fetch_many_returns_what_fetch_returns_in_order(self) -> None:
        """``fetch_many`` returns a leading run of the refs (at least one), each as ``fetch`` would."""

        messages = [make_message(f"many {n}") for n in range(1, 5)]
        for raw in messages:
            self.deliver(raw)

        async def scenario() -> None:
            async with self.session() as connector:
                refs = await connector.list_waiting()
                raws = await connector.fetch_many(refs)
                assert 1 <= len(raws) <= len(refs), "fetch_many must return a leading run of the refs"
                for fetched, ref, delivered in zip(raws, refs, messages, strict=False):
                    self.assert_same_message(fetched, delivered)
                    self.assert_same_message(await connector.fetch(ref), delivered)
                assert len(await connector.list_waiting()) == len(messages), "fetch_many deleted mail"

        self.run(scenario)

    def test_acknowledge_many_removes_exactly_those_messages(self) -> None:
        """``acknowledge_many`` removes the messages given and no other, for good."""

        messages = [make_message(f"ack many {n}") for n in range(1, 5)]
        for raw in messages:
            self.deliver(raw)
        kept = [message_id(messages[1]), message_id(messages[3])]

        async def scenario() -> None:
            async with self.session() as connector:
                refs = await connector.list_waiting()
                await connector.acknowledge_many([refs[0], refs[2]])
            assert self.remaining() == 2
            async with self.session() as connector:
                assert await self.fetch_ids(connector, await connector.list_waiting()) == kept

        self.run(scenario)

    def test_acknowledging_twice_is_fine(self) -> None:
        """Acknowledging a message already removed is not an error, in the same or a new session."""

        self.deliver(make_message("twice"))
        self.deliver(make_message("stays"))

        async def scenario() -> None:
            async with self.session() as connector:
                ref = (await connector.list_waiting())[0]
                await connector.acknowledge(ref)
                await connector.acknowledge(ref)
            async with self.session() as connector:
                await connector.acknowledge(ref)
                assert len(await connector.list_waiting()) == 1
            assert self.remaining() == 1

        self.run(scenario)

    def test_a_message_delivered_after_listing_is_seen_on_the_next_list(self) -> None:
        """Mail arriving during a session is listed next time (next session where the protocol snapshots)."""

        first, second = make_message("first"), make_message("second")
        self.deliver(first)

        async def scenario() -> None:
            async with self.session() as connector:
                assert len(await connector.list_waiting()) == 1
                self.deliver(second)
                if self.sees_new_mail_in_session:
                    refs = await connector.list_waiting()
                    assert await self.fetch_ids(connector, refs) == [message_id(first), message_id(second)]
            async with self.session() as connector:
                refs = await connector.list_waiting()
                assert await self.fetch_ids(connector, refs) == [message_id(first), message_id(second)]

        self.run(scenario)

    def test_fetch_never_deletes(self) -> None:
        """Fetching every message and closing leaves them all in the mailbox."""

        for n in range(1, 3):
            self.deliver(make_message(f"keep {n}"))

        async def scenario() -> None:
            async with self.session() as connector:
                for ref in await connector.list_waiting():
                    await connector.fetch(ref)
            async with self.session() as connector:
                assert len(await connector.list_waiting()) == 2
            assert self.remaining() == 2

        self.run(scenario)

    def test_an_8bit_message_round_trips(self) -> None:
        """A message with raw UTF-8 bytes in its body comes back intact."""

        delivered = make_message(
            "Grüße", "Ärger mit dem Drucker: ça ne marche pas. 印刷できません\r\n", eight_bit=True
        )
        self.deliver(delivered)

        async def scenario() -> None:
            async with self.session() as connector:
                (ref,) = await connector.list_waiting()
                self.assert_same_message(await connector.fetch(ref), delivered)

        self.run(scenario)

    def test_a_large_message_round_trips(self) -> None:
        """A 5 MB message comes back intact."""

        delivered = make_large_message()
        self.deliver(delivered)

        async def scenario() -> None:
            async with self.session() as connector:
                (ref,) = await connector.list_waiting()
                self.assert_same_message(await connector.fetch(ref), delivered)

        self.run(scenario)

    def test_close_is_idempotent_and_never_raises(self) -> None:
        """Closing twice, or without connecting, raises nothing."""

        async def scenario() -> None:
            await self.make_connector().close()
            connector = self.make_connector()
            await connector.connect()
            await connector.close()
            await connector.close()

        self.run(scenario)
