"""The ``outgoing:`` section of the config, validated: the outgoing servers and the delivery policy.

Read from the config by ``engine.config.outgoing_reader``; each server's own keys are checked against
its transport's settings class (``connectors.registry``), so a mistake is reported at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERMANENT_CODES = (501, 503, 550, 553)


@dataclass(frozen=True)
class OutgoingServer:
    """One entry of ``outgoing.servers``: its name, its transport type and its (env-expanded) keys."""

    name: str
    type: str = "smtp"
    settings: Mapping[str, Any] = field(default_factory=dict)
    from_address: str | None = None


@dataclass(frozen=True)
class OutgoingConfig:
    """Where outgoing mail goes and how hard mailgate tries.

    ``servers`` are tried by name (an account's ``outgoing:``), else the first one is used.
    A message is retried with a delay that starts at ``retry_delay_seconds`` and doubles up to
    ``max_retry_delay_seconds``; after ``max_attempts`` attempts it is marked failed. A message
    left in ``sending`` for ``sending_timeout_seconds`` (a crash mid-send) is sent again.
    """

    servers: tuple[OutgoingServer, ...] = ()
    max_attempts: int = 30
    retry_delay_seconds: float = 60.0
    max_retry_delay_seconds: float = 3600.0
    sending_timeout_seconds: float = 600.0
    replies_per_sender_per_hour: int = 10
    permanent_codes: tuple[int, ...] = DEFAULT_PERMANENT_CODES

    def server(self, name: str | None) -> OutgoingServer | None:
        """The server called ``name`` (the first server when ``name`` is None), or None."""
        if name is None:
            return self.servers[0] if self.servers else None
        return next((s for s in self.servers if s.name == name), None)
