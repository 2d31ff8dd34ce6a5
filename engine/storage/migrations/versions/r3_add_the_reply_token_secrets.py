"""Add the reply-token secrets (table replytokensecret).

Revision r3, after r2. The table starts empty: the first open after the upgrade makes the first
secret (engine.storage.token_keys.ensure_token_secret). Forward only: to go back, restore the
backup taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r3"
down_revision = "r2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of the secrets that sign our Message-IDs' reply tokens."""
    op.create_table(
        "replytokensecret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
