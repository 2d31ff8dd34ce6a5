"""The ``database_timeouts:`` section: how long mailgate waits for PostgreSQL before it gives up.

```yaml
database_timeouts:
  connect_seconds: 5       # opening a connection (PostgreSQL's connect_timeout)
  statement_seconds: 30    # one statement (statement_timeout); any answer: 5 s more at most
  keepalive_seconds: 15    # TCP keepalives after this much silence; a dead peer is noticed in ~2x
```

A database that does not answer within these is an outage, like one that refuses connections
(see engine/storage/pg_guard.py). SQLite, a local file, has its own busy timeout instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.config.reader import check_keys, get_section, get_value
from engine.config.yaml_source import Problems

ANSWER_GRACE_SECONDS = 5.0  # a wait for any answer lasts statement_seconds plus this, at most


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Time limits on every PostgreSQL connection; ``statement_seconds`` 0: statements unlimited."""

    connect_seconds: float = 5.0
    statement_seconds: float = 30.0
    keepalive_seconds: float = 15.0

    @property
    def answer_seconds(self) -> float:
        """The longest wait for any answer of the server, on the client's side."""
        if self.statement_seconds == 0:
            return 24 * 3600.0  # migrations: a long statement is expected; still not forever
        return self.statement_seconds + ANSWER_GRACE_SECONDS

    def libpq_parameters(self) -> dict[str, Any]:
        """The connection parameters (libpq's names) that carry these limits."""
        idle = max(1, round(self.keepalive_seconds))
        interval = max(1, idle // 3)
        parameters: dict[str, Any] = {
            "connect_timeout": max(2, round(self.connect_seconds)),  # libpq counts whole seconds, 2 at least
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": interval,
            "keepalives_count": 3,
            # unacknowledged data: give up as keepalives would on silence
            "tcp_user_timeout": (idle + 3 * interval) * 1000,
        }
        return parameters

    def server_options(self) -> str:
        """The ``-c`` settings for the server's side of each connection."""
        return f"-c statement_timeout={round(self.statement_seconds * 1000)}"


DEFAULT_TIMEOUTS = DatabaseTimeouts()
FOR_MIGRATIONS = DatabaseTimeouts(statement_seconds=0)

_KEYS = ("connect_seconds", "statement_seconds", "keepalive_seconds")


def read_database_timeouts(data: Any, problems: Problems) -> DatabaseTimeouts:
    """The validated ``database_timeouts:`` section (defaults when it is absent)."""
    node = get_section(data, "database_timeouts", "a mapping with " + ", ".join(_KEYS), problems)
    check_keys(node, _KEYS, "database_timeouts", problems)
    values: dict[str, float] = {}
    for key in _KEYS:
        default = float(getattr(DEFAULT_TIMEOUTS, key))
        value = get_value(node, key, float, problems, default)
        if value <= 0:
            problems.at(node, key, f"{key} must be positive")
            value = default
        values[key] = value
    return DatabaseTimeouts(**values)
