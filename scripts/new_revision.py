"""Write the next schema revision, r(N+1), from what the models have that the revisions do not build.

Usage (from the checkout, with the development venv)::

    .venv/bin/python scripts/new_revision.py "Add a priority to calls"

It runs every revision on a scratch in-memory SQLite database, compares it with the models
(Alembic's autogenerate) and writes the difference to
``engine/storage/migrations/versions/r<N+1>_<message>.py``. Then read it and finish it by hand:
autogenerate cannot know a rename (it writes a drop and an add), data to move, or the
``server_default`` a new NOT NULL column needs for the rows already there; and SQLite cannot see
expression indexes (write those yourself). Then run ``pytest tests/migrations`` (both databases).
"""

from __future__ import annotations

import sys

from alembic import command

from engine.storage.db import create_database_engine
from engine.storage.revisions import alembic_config, model_differences
from engine.storage.schema import head_revision, revision_number


def main(message: str) -> int:
    """Write the next revision for ``message``; 1 if the models need none."""
    engine = create_database_engine("sqlite://", foreign_keys=False)
    try:
        with engine.begin() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            if not model_differences(connection):
                print("the revisions already build the models' schema: no revision needed", file=sys.stderr)
                return 1
            next_id = f"r{(revision_number(head_revision()) or 0) + 1}"
            command.revision(config, message, autogenerate=True, rev_id=next_id)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].strip():
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
