"""Time behind a small interface so the delay invariant can be tested with a controlled clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in epoch nanoseconds and an awaitable sleep."""

    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep about `seconds` (it may wake early or late: callers re-check the time)."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch (UTC)."""
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when slept on or advanced; `early_wake` makes sleeps shorter."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start_ns
        self.early_wake: float = 1.0
        """Fraction of each requested sleep actually elapsed (1.0 = exact, 0.5 = wakes early)."""

    def now_ns(self) -> int:
        """The fake now."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self._now += int(seconds * 1e9)

    async def sleep(self, seconds: float) -> None:
        """Advance by a fraction of `seconds` (at least 1 ns) and yield to the loop."""
        self._now += max(1, int(seconds * 1e9 * self.early_wake))
        await asyncio.sleep(0)
