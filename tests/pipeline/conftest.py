"""Fixtures for the pipeline safety tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_desk import Desk, build_desk


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    """An installation running the default pack."""
    built = build_desk(tmp_path)
    yield built
    built.runtime.close()
