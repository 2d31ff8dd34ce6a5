"""The service's test-only hooks: a real crash, or a real stop request, at the worst moments."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

# Test-only: "K:SIGNAME" makes the process send itself SIGNAME right after the commit that keeps
# the K-th message (its batch's), before any of that batch is acknowledged; or, for the second,
# right after the K-th message is done, before its batch is committed (a real crash, or a real
# stop request, at the worst moments).
TEST_SIGNAL_AFTER_COMMIT_ENV = "MAILGATE_TEST_SIGNAL_AFTER_COMMIT"
TEST_SIGNAL_AFTER_MESSAGE_ENV = "MAILGATE_TEST_SIGNAL_AFTER_MESSAGE"


def signal_after_count(spec: str | None) -> Callable[[int], None]:
    """The test-only hooks described at ``TEST_SIGNAL_AFTER_COMMIT_ENV`` (a no-op when unset).

    The hook is called with how many messages were just done (committed, or processed); it sends
    the signal once, when their running total reaches K.
    """
    if not spec:
        return lambda count: None
    count_text, _, name = spec.partition(":")
    target, signum = int(count_text), signal.Signals[name or "SIGKILL"]
    total = 0

    def counted(count: int) -> None:
        nonlocal total
        before, total = total, total + count
        if before < target <= total:
            os.kill(os.getpid(), signum)

    return counted
