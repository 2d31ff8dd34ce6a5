"""The admin console's roles, apart from its tables (``engine.storage.console``).

So that ``mailgate admin add --role`` names them without defining those tables in every
``mailgate`` command's start-up.
"""

from __future__ import annotations

ROLE_VIEWER = "viewer"
ROLE_ADMIN = "admin"
ROLES = (ROLE_VIEWER, ROLE_ADMIN)
