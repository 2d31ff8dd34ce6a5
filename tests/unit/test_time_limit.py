"""The per-message time limit lands in the block even when its first signal is swallowed."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from engine.timelimit import ProcessingTimeout, time_limit


class _Swallower:
    """An object whose finalizer runs a long time: an exception raised inside it is dropped."""


def _busy_in_a_weakref_callback(seconds: float) -> None:
    """Spend ``seconds`` inside a weakref callback, where Python drops any exception raised."""

    def callback(_ref: object) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    target = _Swallower()
    ref = weakref.ref(target, callback)
    del target  # the callback runs now
    gc.collect()
    assert ref() is None


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # and nothing is printed
def test_a_time_limit_swallowed_by_a_weakref_callback_is_raised_again_in_the_block() -> None:
    with pytest.raises(ProcessingTimeout, match=r"time limit of 0\.2 s exceeded"), time_limit(0.2):
        _busy_in_a_weakref_callback(0.5)  # the first alarm lands in here and is dropped
        end = time.monotonic() + 30
        while time.monotonic() < end:  # without a second alarm, this would run out its 30 s
            pass


def test_a_block_that_ends_in_time_is_not_interrupted_afterwards() -> None:
    with time_limit(0.05):
        pass
    time.sleep(0.2)  # the timer is disarmed: nothing fires later


def test_a_timeout_caught_by_the_caller_is_not_raised_a_second_time() -> None:
    with pytest.raises(ProcessingTimeout), time_limit(0.05):
        time.sleep(5)
    time.sleep(0.2)  # a retry firing now would raise outside any block
