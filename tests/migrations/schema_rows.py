"""Rows of a mailgate database as JSON, and back: the data the schema-upgrade tests start from.

Only SQLAlchemy is used (tables are reflected from the database), never mailgate's models, so the
same code dumps a database made by an old mailgate and loads rows into a schema built by any
revision. Bytes and timestamps are tagged (``{"$bytes": base64}``, ``{"$datetime": iso}``).

Dump (how ``r1_rows.json`` was made; see ``make_r1_rows.sh``)::

    python tests/migrations/schema_rows.py sqlite:///demo-run/mailgate.sqlite > r1_rows.json
"""

from __future__ import annotations

import base64
import json
import sys
import warnings
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, create_engine, insert, select, text
from sqlalchemy.engine import Connection

VERSION_TABLE = "alembic_version"


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    if isinstance(value, dict) and "$datetime" in value:
        return datetime.fromisoformat(value["$datetime"])
    return value


def reflect(connection: Connection) -> MetaData:
    """The database's tables as they are (SQLite cannot reflect expression indexes: not needed here)."""
    metadata = MetaData()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        metadata.reflect(connection)
    return metadata


def dump_rows(connection: Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table but the version table, in primary-key order, JSON-ready."""
    metadata = reflect(connection)
    dumped: dict[str, list[dict[str, Any]]] = {}
    for table in metadata.sorted_tables:
        if table.name == VERSION_TABLE:
            continue
        order = list(table.primary_key.columns) or list(table.columns)
        rows = connection.execute(select(table).order_by(*order)).mappings()
        dumped[table.name] = [{key: _encode(value) for key, value in row.items()} for row in rows]
    return dumped


def load_rows(connection: Connection, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Insert dumped rows into the (reflected) tables of ``connection``'s database, parents first.

    On PostgreSQL each ``id`` sequence is then moved past the highest id loaded, as it would be had
    the rows been inserted without explicit ids.
    """
    metadata = reflect(connection)
    for table in metadata.sorted_tables:
        table_rows = rows.get(table.name)
        if not table_rows:
            continue
        connection.execute(insert(table), [{k: _decode(v) for k, v in row.items()} for row in table_rows])
        if connection.dialect.name == "postgresql" and "id" in table.columns:
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                    f'(SELECT max(id) FROM "{table.name}"))'
                )
            )


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A dumped row with its bytes and timestamps back as Python values."""
    return {key: _decode(value) for key, value in row.items()}


if __name__ == "__main__":
    engine = create_engine(sys.argv[1])
    with engine.connect() as opened:
        json.dump(dump_rows(opened), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
        sys.stdout.write("\n")
    engine.dispose()
