"""Fixtures for the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.memory import MemoryMailbox


@pytest.fixture(autouse=True)
def empty_memory_mailboxes() -> Iterator[None]:
    """Every test starts and ends with no in-memory mailbox."""
    MemoryMailbox.reset()
    yield
    MemoryMailbox.reset()
