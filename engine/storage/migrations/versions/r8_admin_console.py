"""Add the admin console's tables: its admins, their sessions, and the audit of their actions.

Revision r8, after r7. Forward only: to go back, restore the backup
taken before the upgrade (docs/upgrading.md). New tables only: no row of r7 changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r8"
down_revision = "r7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create consoleadmin, consolesession and consoleaudit."""
    op.create_table(
        "consoleadmin",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "consoleaudit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admin", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consoleaudit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consoleaudit_at"), ["at"], unique=False)

    op.create_table(
        "consolesession",
        sa.Column("token_digest", sa.String(), nullable=False),
        sa.Column("admin", sa.String(), nullable=False),
        sa.Column("csrf_token", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_digest"),
    )
    with op.batch_alter_table("consolesession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consolesession_admin"), ["admin"], unique=False)
