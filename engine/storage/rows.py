"""Row objects for the path of every message, made the way the ORM makes those it loads.

Constructing a table model (``Call(...)``) goes through SQLModel's and the ORM's attribute
machinery column by column, which costs more than the INSERT that writes it; loading one with
``session.get`` costs several times its SELECT. The ORM's own loader does neither: it makes the
instance with the class manager and fills its ``__dict__``. ``build_row`` does the same for a new
row (unnamed columns get the model's defaults), ``insert_persistent`` writes it with one INSERT and
``load_persistent`` reads one with one SELECT (engine/storage/direct.py); both leave the object
persistent in the session, exactly as a flush or a load would, so that changes made through it
later are flushed as usual.

Contract: for plain table models (no relationships loaded through these); values are taken as
given, without validation, as the ORM takes them from the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, SQLModel

from engine.storage.direct import connection_of, insert_row, pipelined_batch, run_statement

Row = TypeVar("Row", bound=SQLModel)

_COLUMNS: dict[type[SQLModel], tuple[str, ...]] = {}
_BY_ID: dict[type[SQLModel], Any] = {}


def _columns(table: type[SQLModel]) -> tuple[str, ...]:
    names = _COLUMNS.get(table)
    if names is None:
        names = _COLUMNS[table] = tuple(c.name for c in sa_inspect(table).local_table.columns)
    return names


def _instance(table: type[Row], values: dict[str, Any]) -> Row:
    row: Row = sa_inspect(table).class_manager.new_instance()
    row.__dict__.update(values)
    return row


# per table, each column's default: a factory to call (or None), else the value
_DEFAULTS: dict[type[SQLModel], dict[str, tuple[Callable[[], Any] | None, Any]]] = {}
_IMMUTABLE = (type(None), bool, int, float, str, bytes)


def _defaults(table: type[SQLModel]) -> dict[str, tuple[Callable[[], Any] | None, Any]]:
    """What ``FieldInfo.get_default(call_default_factory=True)`` gives for each column, found once.

    Pydantic looks up the signature of a default factory on every call, and deep-copies a
    default; an immutable default is taken as it is and a factory of no argument called directly.
    """
    found = _DEFAULTS.get(table)
    if found is not None:
        return found
    fields = table.model_fields
    found = {}
    for name in _columns(table):
        info = fields.get(name)
        if info is None:
            continue
        factory = info.default_factory
        if factory is None and type(info.default) in _IMMUTABLE:
            found[name] = (None, info.default)
        elif factory is not None and not info.default_factory_takes_validated_data:
            found[name] = (cast("Callable[[], Any]", factory), None)
        else:  # a mutable default: pydantic's own copy, each time
            found[name] = (functools.partial(info.get_default, call_default_factory=True), None)
    _DEFAULTS[table] = found
    return found


def build_row(table: type[Row], **values: Any) -> Row:
    """A new (transient) row object: ``values``, and the model's default for every other column."""
    defaults = _defaults(table)
    full: dict[str, Any] = {}
    for name in _columns(table):
        if name in values:
            full[name] = values[name]
        elif name in defaults:
            factory, default = defaults[name]
            full[name] = default if factory is None else factory()
    unknown = set(values) - set(full)
    if unknown:
        raise TypeError(f"{table.__name__} has no column {', '.join(sorted(unknown))}")
    return _instance(table, full)


def _attach(session: Session, row: Row) -> Row:
    make_transient_to_detached(row)  # the identity key from its id; every column counts as loaded
    session.add(row)
    return row


def insert_persistent(session: Session, row: Row) -> Row:
    """INSERT a new row with one plain statement and attach its object to the session as persistent.

    The end state is what a flush would leave (the row written, its id set, the object clean and
    in the session's identity map) without the unit of work, which costs several times the INSERT.
    Every column's value is taken from the object as it is (``id`` aside).
    """
    return _attach(session, insert_transient(session, row))


def insert_transient(session: Session, row: Row) -> Row:
    """INSERT a new row with one plain statement and set its id; its object stays out of the session.

    For a row nothing changes later in the transaction: the same row is written as by
    ``insert_persistent``, without attaching the object (which costs more than the INSERT).
    """
    table = type(row)
    held = row.__dict__
    values = {name: held[name] if name in held else getattr(row, name) for name in _columns(table)}
    values.pop("id", None)
    row.__dict__["id"] = insert_row(session, table, values)
    return row


def load_persistent(session: Session, table: type[Row], row_id: int) -> Row | None:
    """The row with this id as a persistent object of the session (one SELECT), or None.

    An object the session holds already is returned as it is, as ``session.get`` would; one its
    PostgreSQL batch read ahead (``engine.storage.queries.look_up_senders``) is made without a SELECT.
    """
    held = session.identity_map.get((table, (row_id,), None))
    if held is not None:
        return held
    batch = pipelined_batch()
    if batch is not None and batch.rows:
        ahead = batch.rows.get((str(table.__tablename__), row_id))
        if ahead is not None and connection_of(session).connection.driver_connection is batch.driver:
            return _attach(session, _instance(table, dict(zip(_columns(table), ahead, strict=True))))
    statement = _BY_ID.get(table)
    if statement is None:
        columns = sa_inspect(table).local_table.columns
        statement = _BY_ID[table] = select(*columns).where(columns["id"] == bindparam("row_id"))
    found = run_statement(session, statement, {"row_id": row_id}).first()
    if found is None:
        return None
    return _attach(session, _instance(table, dict(zip(_columns(table), found, strict=True))))
