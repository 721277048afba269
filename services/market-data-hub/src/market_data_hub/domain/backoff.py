"""Capped exponential backoff with equal jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays initial, 2*initial, ... capped at `maximum`; each drawn from [d/2, d]."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        """The next delay in seconds; grows until `maximum`."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return float(ceiling / 2 + self._rng() * ceiling / 2)

    def reset(self) -> None:
        """Start again from `initial` (after a healthy connection)."""
        self.attempt = 0
