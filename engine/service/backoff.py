"""How long to wait before trying a failing mailbox again: exponential, capped, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

_RNG = random.Random()


@dataclass(frozen=True)
class Backoff:
    """Delays that double from ``initial`` up to ``cap``; each is drawn from its upper half.

    The jitter ("equal jitter": half fixed, half random) keeps accounts on one server from
    retrying in step, while never retrying sooner than half the nominal delay.
    """

    initial: float
    cap: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial or self.factor < 1:
            raise ValueError(f"invalid backoff {self}")

    def nominal(self, failures: int) -> float:
        """The delay before the next attempt after ``failures`` failures in a row (no jitter)."""
        exponent = min(max(failures, 1) - 1, 64)
        return min(self.cap, self.initial * self.factor**exponent)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The delay with jitter: uniformly between half the nominal delay and the whole of it."""
        nominal = self.nominal(failures)
        return nominal / 2 + (rng or _RNG).uniform(0, nominal / 2)
