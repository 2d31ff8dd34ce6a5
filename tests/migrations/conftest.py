"""The fixture of the schema-migration tests; their helpers are in migration_helpers.py."""

from __future__ import annotations

import json

import pytest
from migration_helpers import SCHEMA_FIXTURES, Rows


@pytest.fixture(scope="session")
def r1_rows() -> Rows:
    """The rows 0bdbdc9's code wrote (tests/fixtures/schema/r1_rows.json, see make_r1_rows.sh)."""
    rows: Rows = json.loads((SCHEMA_FIXTURES / "r1_rows.json").read_text(encoding="utf-8"))
    return rows
