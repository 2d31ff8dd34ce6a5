"""The reference connector: a mailbox held in memory (for tests and as the smallest example)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from connectors.base import Connector, ConnectorError, ConnectorSettings, MessageRef


@dataclass(frozen=True)
class MemorySettings(ConnectorSettings):
    """``connector: {type: memory, mailbox: NAME}``: mailboxes with the same name share messages."""

    mailbox: str = "default"


class MemoryMailbox:
    """A shared in-memory mailbox: tests put messages in and look at what is left."""

    _boxes: ClassVar[dict[str, MemoryMailbox]] = {}

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self.fail_next_connect: ConnectorError | None = None

    @classmethod
    def named(cls, name: str) -> MemoryMailbox:
        """The mailbox called ``name`` (created empty on first use)."""
        return cls._boxes.setdefault(name, cls())

    @classmethod
    def reset(cls) -> None:
        """Forget every mailbox."""
        cls._boxes.clear()

    def append(self, raw: bytes) -> str:
        """Deliver a message; returns its id."""
        ident = f"{next(self._ids):08d}"
        self.messages[ident] = raw
        return ident

    def extend(self, raws: Iterable[bytes]) -> None:
        """Deliver several messages."""
        for raw in raws:
            self.append(raw)


class MemoryConnector(Connector):
    """Reads a ``MemoryMailbox``."""

    name = "memory"
    Settings = MemorySettings

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, MemorySettings)
        self.box = MemoryMailbox.named(settings.mailbox)
        self.connected = False

    async def connect(self) -> None:
        """Open (fails once if a test armed ``fail_next_connect``)."""
        failure, self.box.fail_next_connect = self.box.fail_next_connect, None
        if failure is not None:
            raise failure
        self.connected = True

    async def list_waiting(self) -> list[MessageRef]:
        """Every message, oldest first."""
        return [MessageRef(ident, len(raw)) for ident, raw in sorted(self.box.messages.items())]

    async def fetch(self, ref: MessageRef) -> bytes:
        """The stored bytes."""
        try:
            return self.box.messages[ref.id]
        except KeyError:
            raise ConnectorError(f"message {ref.id} is no longer in mailbox") from None

    async def acknowledge(self, ref: MessageRef) -> None:
        """Remove the message (already gone is fine)."""
        self.box.messages.pop(ref.id, None)

    async def close(self) -> None:
        """Nothing to release."""
        self.connected = False
