"""Add the account leases and the service workers: which ``mailgate run`` process works which account.

Revision r6, after r5. Forward only: to go back, restore the backup taken before the upgrade
(docs/upgrading.md). New tables only: no row of r5 changes (the lease rows are written by the
first service that starts).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r6"
down_revision = "r5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the accountlease and serviceworker tables (docs/scaling.md)."""
    op.create_table(
        "accountlease",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account"),
    )
    op.create_table(
        "serviceworker",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
