"""The in-memory reference connector passes the conformance suite, and its test-only levers work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.base import Connector, ConnectorError
from connectors.memory import MemoryConnector, MemoryMailbox, MemorySettings
from connectors.registry import make_connector
from connectors.testing import ConnectorConformance


class TestMemoryConnector(ConnectorConformance):
    """The conformance suite over a ``MemoryMailbox``."""

    def make_connector(self) -> Connector:
        """A connector reading the mailbox called ``conformance``."""
        return MemoryConnector("test", MemorySettings(type="memory", mailbox="conformance"), Path("."))

    def deliver(self, raw: bytes) -> None:
        """Append to the shared mailbox."""
        MemoryMailbox.named("conformance").append(raw)

    def remaining(self) -> int:
        """Messages left in the shared mailbox."""
        return len(MemoryMailbox.named("conformance").messages)


def test_an_armed_connect_failure_is_raised_once() -> None:
    """``fail_next_connect`` makes exactly the next connect fail, as a network outage would."""
    MemoryMailbox.named("flaky").fail_next_connect = ConnectorError("server went away")
    connector = make_connector("helpdesk", {"type": "memory", "mailbox": "flaky"}, Path("."))

    with pytest.raises(ConnectorError, match="server went away"):
        asyncio.run(connector.connect())
    asyncio.run(connector.connect())


def test_connectors_naming_the_same_mailbox_share_its_messages() -> None:
    """Two accounts configured with one mailbox name read the same messages."""
    MemoryMailbox.named("shared").append(b"Subject: x\r\n\r\nbody\r\n")
    first = make_connector("a", {"type": "memory", "mailbox": "shared"}, Path("."))
    second = make_connector("b", {"type": "memory", "mailbox": "shared"}, Path("."))

    async def both() -> tuple[int, int]:
        return len(await first.list_waiting()), len(await second.list_waiting())

    assert asyncio.run(both()) == (1, 1)
