"""Record how the sender of the mail that wrote a history entry was authenticated.

Revision r2, after r1. Adds ``historyentry.sender_authentication`` (dmarc, dkim, arc, reply_token
or none; NULL for entries written before, or not by a mail). Forward only: to go back, restore
the backup taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r2"
down_revision = "r1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable column; the rows already there keep NULL (not known)."""
    with op.batch_alter_table("historyentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_authentication", sa.String(), nullable=True))
