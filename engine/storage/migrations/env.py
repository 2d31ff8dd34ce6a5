"""Alembic's environment for mailgate: revisions run on the connection ``engine.storage.migrate`` opened.

That connection is already in a transaction, which its caller commits (with the version stamp)
or rolls back as a whole. The options (batch mode for SQLite, how autogenerate compares and
writes) are ``engine.storage.revisions.context_options``, shared with the models-match test.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from engine.storage.revisions import context_options

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("mailgate's migrations run through engine.storage.migrate (mailgate db upgrade)")
context.configure(connection=connection, **context_options(connection))
with context.begin_transaction():
    context.run_migrations()
