"""Client-side token bucket: keeps every Alpaca REST request under the configured rate."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Token bucket: `rate_per_min` tokens a minute, at most `burst` stored.

    With `burst=1` requests are spaced at least `60/rate` seconds apart, so a server-side
    limiter of the same rate (fixed or sliding window, or a bucket) never answers 429.
    The REST calls run in worker threads (alpaca-py is synchronous), so the bucket waits in
    the calling thread: a busy event loop cannot delay a wake-up and waste the rate.
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
        self._lock = threading.Lock()
        self.acquired = 0

    @property
    def rate_per_second(self) -> float:
        """Configured rate in requests per second."""
        return 1.0 / self._interval

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
        self._stamp = now

    def acquire_blocking(self) -> float:
        """Take one token, sleeping this thread until one is available; returns seconds waited."""
        with self._lock:
            self._refill()
            waited = 0.0
            while self._tokens < 1.0:
                pause = (1.0 - self._tokens) * self._interval
                time.sleep(pause)
                waited += pause
                self._refill()
            self._tokens -= 1.0
            self.acquired += 1
        if waited and self._on_wait is not None:
            self._on_wait(waited)
        return waited

    async def acquire(self) -> float:
        """Async form (waits in a worker thread)."""
        return await asyncio.to_thread(self.acquire_blocking)
