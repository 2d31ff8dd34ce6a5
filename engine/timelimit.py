"""A per-message time limit, so that one pathological message never blocks the next."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class ProcessingTimeout(BaseException):
    """The message took longer than the configured time limit.

    A BaseException, like KeyboardInterrupt: the ``except Exception`` of lenient mail reading and
    of actions must not swallow it, or the limit would be lost (the timer fires once).
    """


RETRY_SECONDS = 0.05  # after the limit, the timeout is raised again this often until it lands


@contextmanager
def time_limit(seconds: float, *, limit: float | None = None) -> Iterator[None]:
    """Raise ProcessingTimeout inside the block once ``seconds`` have passed.

    ``limit``: the configured limit the error names, when ``seconds`` is what is left of it.

    Uses a real-time interval timer, so it is enforced only in the main thread; elsewhere the
    block runs unlimited (the service runs the pipeline in the main thread).

    Python runs a signal handler wherever the main thread is, and an exception raised inside a
    weakref callback, a ``__del__`` or a garbage collection is printed and dropped, not raised in
    the block. So once the limit has passed, the timer keeps firing every ``RETRY_SECONDS`` until
    the block has received the ``ProcessingTimeout``: a dropped one is raised again.
    """
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return
    delivered = False

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        if not delivered:
            raise ProcessingTimeout(f"time limit of {limit or seconds:g} s exceeded")

    previous_hook = sys.unraisablehook

    def drop_our_timeout(unraisable: Any) -> None:  # a dropped one is raised again: nothing to print
        if not isinstance(unraisable.exc_value, ProcessingTimeout):
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    sys.unraisablehook = drop_our_timeout
    signal.setitimer(signal.ITIMER_REAL, seconds, RETRY_SECONDS)
    try:
        yield
    except ProcessingTimeout:
        delivered = True
        raise
    finally:
        sys.unraisablehook = previous_hook
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
