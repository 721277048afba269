"""Client-side token bucket: keeps every Alpaca REST request under the configured rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Async token bucket: `rate_per_min` tokens a minute, at most `burst` stored.

    With `burst=1` requests are spaced exactly `60/rate` seconds apart, so a server-side
    limiter of the same rate (fixed or sliding window, or a bucket) never answers 429.
    """

    def __init__(
        self,
        rate_per_min: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._interval = 60.0 / rate_per_min
        self._burst = burst
        self._clock = clock
        self._on_wait = on_wait
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.acquired = 0

    @property
    def rate_per_second(self) -> float:
        """Configured rate in requests per second."""
        return 1.0 / self._interval

    async def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        async with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
            self._stamp = now
            waited = 0.0
            if self._tokens < 1.0:
                waited = (1.0 - self._tokens) * self._interval
                await asyncio.sleep(waited)
                now = self._clock()
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
                self._stamp = now
            self._tokens = max(0.0, self._tokens - 1.0)
            self.acquired += 1
        if waited and self._on_wait is not None:
            self._on_wait(waited)
        return waited
