"""Fixtures for the pipeline safety tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from db_faults import install_failing_triggers
from pipeline_desk import Desk, build_desk


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    """An installation running the default pack."""
    built = build_desk(tmp_path)
    yield built
    built.runtime.close()


@pytest.fixture
def faulty_desk(tmp_path: Path, db_url: str) -> Iterator[Desk]:
    """The default pack on a fresh database (SQLite, then PostgreSQL) with the failing triggers."""
    built = build_desk(tmp_path, database=db_url)
    install_failing_triggers(built.runtime.engine)
    yield built
    built.runtime.close()
