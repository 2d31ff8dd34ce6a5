"""Large binary values (engine/storage/blobs.py): on SQLite written in pieces, elsewhere in one INSERT."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.storage.blobs import PIECEWISE_BYTES, insert_with_large_value
from engine.storage.db import transaction
from engine.storage.models import AttachedObject

MB = 1024 * 1024


def _values(data: bytes) -> dict[str, object]:
    return {
        "entity": "call",
        "entity_id": 1,
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "sha256": "x",
        "data": data,
        "security_profile": "Unspecified",
        "created_at": datetime(2026, 12, 4, tzinfo=UTC),
    }


def _stored(engine: Engine, row_id: int) -> AttachedObject:
    with Session(engine) as session:
        row = session.get(AttachedObject, row_id)
        assert row is not None
        return row


def test_a_large_value_is_stored_byte_for_byte_and_a_small_one_too(engine: Engine) -> None:
    big = random.Random(1).randbytes(PIECEWISE_BYTES * 3 + 12345)  # several pieces and a remainder
    small = b"tiny attachment"
    with transaction(engine) as session:
        big_id = insert_with_large_value(session, AttachedObject, _values(big), "data")
        small_id = insert_with_large_value(session, AttachedObject, _values(small), "data")
    assert _stored(engine, big_id).data == big
    stored = _stored(engine, small_id)
    assert (stored.data, stored.filename, stored.created_at.year) == (small, "big.bin", 2026)


def test_a_large_value_rolled_back_with_its_transaction_leaves_no_row(engine: Engine) -> None:
    class Undo(Exception):
        pass

    big = random.Random(2).randbytes(2 * MB)
    try:
        with transaction(engine) as session:
            row_id = insert_with_large_value(session, AttachedObject, _values(big), "data")
            raise Undo
    except Undo:
        pass
    with Session(engine) as session:
        assert session.get(AttachedObject, row_id) is None


_PEAK_OF_INSERT = """
import os, sys
from datetime import UTC, datetime
from engine.storage import blobs
from engine.storage.blobs import insert_with_large_value
from engine.storage.db import open_database, transaction
from engine.storage.models import AttachedObject
if sys.argv[2] == "plain":
    blobs.PIECEWISE_BYTES = 1 << 40
engine = open_database("sqlite:///" + sys.argv[1])
data = os.urandom(int(sys.argv[3]))  # no temporary copy that the peak would count
values = dict(entity="call", entity_id=1, filename="b", content_type="x", size=len(data), sha256="x",
              data=data, security_profile="Unspecified", created_at=datetime(2026, 12, 4, tzinfo=UTC))
def high_water():  # this process's own peak (ru_maxrss would start at its parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = high_water()
with transaction(engine) as session:
    insert_with_large_value(session, AttachedObject, values, "data")
print(high_water() - before)
"""


def test_a_large_value_costs_sqlite_little_more_memory_than_a_plain_insert(tmp_path: Path) -> None:
    size = 32 * MB

    def growth(how: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_OF_INSERT, str(tmp_path / f"{how}.sqlite"), how, str(size)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    piecewise, plain = growth("piecewise"), growth("plain")
    # a plain INSERT copies the value twice more (the driver's bind, SQLite's row buffer)
    assert piecewise < 0.5 * size < plain, (piecewise / size, plain / size)
