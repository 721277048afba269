"""A token bucket (the plan's REST budget), with an injectable clock for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_min` tokens per minute, bursting up to `burst`; `acquire` waits for a token."""

    def __init__(
        self,
        rate_per_min: float,
        burst: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_min / 60.0
        self.capacity = float(burst if burst is not None else max(1, int(rate_per_min // 20)))
        self.tokens = self.capacity
        self._now = monotonic
        self._stamp = monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._now()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    async def acquire(self) -> float:
        """Take one token, waiting in FIFO order; return how long it waited."""
        waited = 0.0
        async with self._lock:
            while (w := self.wait_time()) > 0:
                await asyncio.sleep(w)
                waited += w
            self.tokens -= 1
        return waited

    def drain(self, seconds: float) -> None:
        """Upstream said 429: spend the budget so nobody calls for about `seconds`."""
        self._refill()
        self.tokens = min(self.tokens, 1 - seconds * self.rate)
