"""Add the service's heartbeat: one row that ``mailgate run`` rewrites while it runs.

Revision r5, after r4. Forward only: to go back, restore the backup taken before the upgrade
(docs/upgrading.md). A new table only: no row of r4 changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r5"
down_revision = "r4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the serviceheartbeat table (``mailgate status`` reads it)."""
    op.create_table(
        "serviceheartbeat",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
