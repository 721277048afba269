"""Time behind the kit's `Clock` protocol, plus epoch nanoseconds for the delay invariant.

The hub's domain reads wall time as integer epoch nanoseconds (`now_ns`: the delay gate and
the horizon compare it with event timestamps, on the hot path, without building datetimes), so
its clock is the kit's `Clock` with one more method. `FakeClock` stays here: its sleeps advance
time themselves and may wake early on purpose (`early_wake`), which the delay-invariant property
test needs and the kit's `ManualClock` (sleepers wait for `advance`) does not do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol

from raxx_service_kit.clock import Clock as KitClock
from raxx_service_kit.clock import SystemClock as KitSystemClock


class Clock(KitClock, Protocol):
    """The kit's clock (`now`, `monotonic`, `sleep`) and wall time in epoch nanoseconds."""

    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch (UTC)."""
        ...


class SystemClock(KitSystemClock):
    """The real clock."""

    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch (UTC)."""
        return time.time_ns()


class FakeClock:
    """A clock that only moves when slept on or advanced; `early_wake` makes sleeps shorter."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start_ns
        self._origin = start_ns
        self.early_wake: float = 1.0
        """Fraction of each requested sleep actually elapsed (1.0 = exact, 0.5 = wakes early)."""

    def now_ns(self) -> int:
        """The fake now."""
        return self._now

    def now(self) -> dt.datetime:
        """The fake now as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self._now / 1e9, dt.UTC)

    def monotonic(self) -> float:
        """Seconds since this clock was made (it never goes back)."""
        return (self._now - self._origin) / 1e9

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self._now += int(seconds * 1e9)

    async def sleep(self, seconds: float) -> None:
        """Advance by a fraction of `seconds` (at least 1 ns) and yield to the loop."""
        self._now += max(1, int(seconds * 1e9 * self.early_wake))
        await asyncio.sleep(0)
