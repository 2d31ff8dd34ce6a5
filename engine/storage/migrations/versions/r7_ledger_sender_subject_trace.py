"""Keep each ledger entry's sender, subject and decision trace, and index the communication log.

The admin console's Messages page lists the ledger newest first within a search by sender,
outcome, rule or item number: each has an index ending in ``id``, so a page is one index range;
a day is a range of ``processed_at``. Older entries keep empty columns (no trace was kept then).

Revision r7, after r6. Forward only: to go back, restore the backup
taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r7"
down_revision = "r6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the three columns (empty for the rows already there) and the log's indexes."""
    with op.batch_alter_table("ledgerentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("trace", sa.LargeBinary(), nullable=True))
        batch_op.create_index("ix_ledgerentry_number_id", ["number", "id"], unique=False)
        batch_op.create_index("ix_ledgerentry_outcome_id", ["outcome", "id"], unique=False)
        batch_op.create_index("ix_ledgerentry_processed_at", ["processed_at"], unique=False)
        batch_op.create_index("ix_ledgerentry_rule_id", ["rule", "id"], unique=False)
        batch_op.create_index("ix_ledgerentry_sender_id", ["sender", "id"], unique=False)
