"""IMAP and POP3 several messages at a time (``fetch_many``, ``acknowledge_many``) against the real Dovecot.

The service drives every connector a batch at a time (engine/service/watcher.py); these two
override the base class's one-at-a-time defaults with one round trip per batch, and what they
return must be exactly what one-at-a-time fetching returns, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot

from connectors.base import Connector, ConnectorError
from connectors.imap.wire import uid_set
from connectors.registry import make_connector
from connectors.testing import make_large_message, make_message, message_id

User = tuple[str, str]


def connector_for(protocol: str, dovecot: Dovecot, user: User, **settings: Any) -> Connector:
    """A connector of ``protocol`` for ``user`` on the plain port."""
    port = dovecot.imap_port if protocol == "imap" else dovecot.pop3_port
    raw = {"type": protocol, "host": dovecot.host, "port": port, "security": "plain"}
    raw |= {"username": user[0], "password": user[1], "timeout": 10, **settings}
    return make_connector("helpdesk", raw, Path("."))


def own_batches(connector: Connector) -> bool:
    """Whether the connector does batches itself rather than through the base class's loops."""
    kind = type(connector)
    return (
        kind.fetch_many is not Connector.fetch_many
        and kind.acknowledge_many is not Connector.acknowledge_many
    )


def deliver(dovecot: Dovecot, user: User, count: int) -> list[bytes]:
    """``count`` small messages appended in order."""
    sent = [make_message(f"batch {n}") for n in range(count)]
    for raw in sent:
        dovecot.append(user[0], raw)
    return sent


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_fetch_many_returns_the_same_bytes_as_fetch_in_order(
    dovecot: Dovecot, mailbox_user: User, protocol: str
) -> None:
    sent = deliver(dovecot, mailbox_user, 4)
    connector = connector_for(protocol, dovecot, mailbox_user)
    assert own_batches(connector)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        await connector.connect()
        try:
            refs = await connector.list_waiting()
            one_by_one = [await connector.fetch(ref) for ref in refs]
            return one_by_one, await connector.fetch_many(refs)
        finally:
            await connector.close()

    one_by_one, together = asyncio.run(scenario())
    assert together == one_by_one
    assert [message_id(raw) for raw in together] == [message_id(raw) for raw in sent]
    assert dovecot.count(mailbox_user[0]) == 4  # fetching changes nothing


def test_imap_lists_each_message_with_its_size(dovecot: Dovecot, mailbox_user: User) -> None:
    dovecot.append(mailbox_user[0], make_message("small"))
    dovecot.append(mailbox_user[0], make_large_message(300_000))
    connector = connector_for("imap", dovecot, mailbox_user)

    async def scenario() -> list[tuple[int | None, int]]:
        await connector.connect()
        try:
            refs = await connector.list_waiting()
            return [(ref.size, len(await connector.fetch(ref))) for ref in refs]
        finally:
            await connector.close()

    sizes = asyncio.run(scenario())
    assert [listed for listed, _ in sizes] == [fetched for _, fetched in sizes]
    assert sizes[1][1] > 300_000


def test_imap_fetch_many_stops_before_a_message_another_client_deleted(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    deliver(dovecot, mailbox_user, 3)
    connector = connector_for("imap", dovecot, mailbox_user)

    async def scenario() -> tuple[int, str]:
        await connector.connect()
        try:
            refs = await connector.list_waiting()
            with dovecot.imap(mailbox_user[0]) as client:  # a mail client deletes the second one
                client.select("INBOX")
                client.uid("STORE", refs[1].id.split(":")[1], "+FLAGS", "(\\Deleted)")
                client.expunge()
            prefix = await connector.fetch_many(refs)
            with pytest.raises(ConnectorError) as gone:
                await connector.fetch_many(refs[1:])
            return len(prefix), str(gone.value)
        finally:
            await connector.close()

    fetched, error = asyncio.run(scenario())
    assert fetched == 1
    assert "no longer in folder" in error


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_acknowledge_many_removes_every_message(dovecot: Dovecot, mailbox_user: User, protocol: str) -> None:
    deliver(dovecot, mailbox_user, 5)
    connector = connector_for(protocol, dovecot, mailbox_user)
    assert own_batches(connector)

    async def scenario() -> None:
        await connector.connect()
        try:
            refs = await connector.list_waiting()
            await connector.acknowledge_many([refs[0], refs[1], refs[3]])
        finally:
            await connector.close()  # POP3: the deletions take effect at QUIT

    asyncio.run(scenario())
    assert dovecot.count(mailbox_user[0]) == 2


def test_imap_acknowledge_many_moves_every_message_to_the_processed_folder(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    deliver(dovecot, mailbox_user, 3)
    connector = connector_for("imap", dovecot, mailbox_user, processed_folder="Done")
    assert own_batches(connector)

    async def scenario() -> None:
        await connector.connect()
        try:
            await connector.acknowledge_many(await connector.list_waiting())
        finally:
            await connector.close()

    asyncio.run(scenario())
    assert (dovecot.count(mailbox_user[0]), dovecot.count(mailbox_user[0], "Done")) == (0, 3)


def test_pop3_fetch_many_ends_where_the_session_must_quit(dovecot: Dovecot, mailbox_user: User) -> None:
    deliver(dovecot, mailbox_user, 5)
    connector = connector_for("pop3", dovecot, mailbox_user, max_messages_per_session=2)
    assert own_batches(connector)

    async def scenario() -> list[int]:
        await connector.connect()
        sizes: list[int] = []
        try:
            while refs := await connector.list_waiting():
                batch = await connector.fetch_many(refs)
                sizes.append(len(batch))
                await connector.acknowledge_many(refs[: len(batch)])  # QUIT after the second deletion
        finally:
            await connector.close()
        return sizes

    assert asyncio.run(scenario()) == [2, 2, 1]
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_uid_set_writes_runs_as_ranges() -> None:
    assert uid_set([7, 1, 2, 3, 9, 10, 3]) == "1:3,7,9:10"
    assert uid_set([42]) == "42"


def test_imap_acknowledge_many_leaves_its_expunge_in_flight_until_the_next_command_needs_it(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    deliver(dovecot, mailbox_user, 6)
    connector = connector_for("imap", dovecot, mailbox_user)

    async def scenario() -> tuple[bool, list[str], int, list[str]]:
        await connector.connect()
        try:
            refs = await connector.list_waiting()
            await connector.acknowledge_many(refs[:2])
            in_flight = getattr(connector, "_expunging", None) is not None
            await connector.acknowledge_many(refs[2:4])  # settles the first, sends its own
            listed = [ref.id for ref in await connector.list_waiting()]  # settles the second
            count = dovecot.count(mailbox_user[0])
            return in_flight, listed, count, [ref.id for ref in refs]
        finally:
            await connector.close()

    in_flight, listed, count, ids = asyncio.run(scenario())
    assert in_flight  # the server expunges while the caller goes on
    assert listed == ids[4:]
    assert count == 2  # settled: gone from the mailbox before the connection closes
