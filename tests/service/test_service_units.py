"""The service's small parts: retry delays and the structured log line."""

from __future__ import annotations

import random
import shlex

import pytest

from engine.service import Backoff
from engine.service.events import format_event


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=5, cap=300)

    assert [backoff.nominal(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff.nominal(10_000) == 300


def test_backoff_jitter_stays_in_the_upper_half_of_the_nominal_delay() -> None:
    backoff, rng = Backoff(initial=5, cap=300), random.Random(7)

    for failures in range(1, 12):
        delays = {backoff.delay(failures, rng) for _ in range(200)}
        nominal = backoff.nominal(failures)
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert len(delays) > 100  # spread out, so accounts on one server do not retry in step


@pytest.mark.parametrize(
    "bad", [{"initial": 0, "cap": 1}, {"initial": 10, "cap": 5}, {"initial": 1, "cap": 2, "factor": 0.5}]
)
def test_a_backoff_that_would_not_back_off_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)


def test_an_event_line_splits_back_into_its_pairs() -> None:
    line = format_event(
        "poll_failed",
        account="sales desk",
        error='LOGIN refused: "bad" password=x',
        retry_in=7.25,
        number=None,
    )

    assert line.startswith("event=poll_failed account=")
    pairs = dict(part.split("=", 1) for part in shlex.split(line))
    assert pairs == {
        "event": "poll_failed",
        "account": "sales desk",
        "error": 'LOGIN refused: "bad" password=x',
        "retry_in": "7.25",
        "number": "-",
    }
