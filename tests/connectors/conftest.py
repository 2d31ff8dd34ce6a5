"""Shared fixtures for the connector tests (each connector's own servers live in its test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.memory import MemoryMailbox


# in-memory mailboxes are process-wide: every test starts and ends without any
@pytest.fixture(autouse=True)
def no_memory_mailboxes() -> Iterator[None]:
    """Forget every in-memory mailbox before and after each test."""
    MemoryMailbox.reset()
    yield
    MemoryMailbox.reset()
