"""Keep every processed mail's original, and tell a reused Message-ID apart.

A table of compressed originals (issue 12), the Message-ID key on each history entry that links it
to its original, and a fingerprint on each ledger entry.

Revision r4, after r3. Forward only: to go back, restore the backup
taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r4"
down_revision = "r3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the originals table and the two columns."""
    op.create_table(
        "originalmessage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("message_key", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("compression", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "message_key"),
    )
    with op.batch_alter_table("originalmessage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_originalmessage_message_key"), ["message_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_originalmessage_received_at"), ["received_at"], unique=False)

    with op.batch_alter_table("historyentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(), nullable=True))

    with op.batch_alter_table("ledgerentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(), nullable=True))
