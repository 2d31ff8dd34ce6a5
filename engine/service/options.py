"""The service's tunables (defaults suit production; tests shorten them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.service.backoff import Backoff


@dataclass(frozen=True)
class ServiceOptions:
    """How the service retries, how long it lets a server think, how often it drains the outbox."""

    # connection failures, timeouts, server errors: 5 s, 10 s, 20 s ... up to 5 minutes
    retry: Backoff = field(default_factory=lambda: Backoff(initial=5.0, cap=300.0))
    # refused credentials will not fix themselves soon: 1 minute, doubling up to 30 minutes
    auth_retry: Backoff = field(default_factory=lambda: Backoff(initial=60.0, cap=1800.0))
    # the longest a connect, a listing or a fetch may take before it counts as a failure
    operation_timeout: float = 300.0
    # the longest an acknowledgement may take (it is not interrupted by a stop request)
    acknowledge_timeout: float = 60.0
    # how often queued outgoing mail is sent (also right after a pass that processed mail)
    outbox_interval: float = 5.0
