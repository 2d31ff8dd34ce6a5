"""Drop the ledger's index on the message key alone.

Every processed message wrote an entry into it at a random place (a Message-ID), for nothing the
service reads: a mail's entry is found by (account, message key), the unique constraint's own
index, and ``mailgate message show`` now asks account by account. The index cost SQLite about
a fifth of the ledger entry's insert. No row changes.

Revision r9, after r8. Forward only: to go back, restore the backup
taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

from alembic import op

revision = "r9"
down_revision = "r8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop ix_ledgerentry_message_key."""
    op.drop_index("ix_ledgerentry_message_key", table_name="ledgerentry")
