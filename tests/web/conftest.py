"""Fixtures for the console's tests: an installation full of mail, and an HTTP client of its console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_client import TestClient
from console_desk import ConsoleDesk, build_console_desk

from engine.web.app import create_app


@pytest.fixture
def desk(tmp_path: Path, db_url: str) -> Iterator[ConsoleDesk]:
    """A fresh installation with logged, quarantined and HTML mail (tests/web/console_desk.py), on
    SQLite and on PostgreSQL."""
    built = build_console_desk(tmp_path, db_url)
    yield built
    built.runtime.close()


@pytest.fixture
def client(desk: ConsoleDesk) -> Iterator[TestClient]:
    """An HTTPS client of the console, not signed in (Secure cookies need https)."""
    with TestClient(create_app(desk.runtime), base_url="https://testserver") as test_client:
        yield test_client
