"""${message}

Revision ${up_revision}, after ${down_revision | comma,n}. Forward only: to go back, restore the backup
taken before the upgrade (docs/upgrading.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    """${message}"""
    ${upgrades if upgrades else "pass"}
