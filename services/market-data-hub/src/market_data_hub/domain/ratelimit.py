"""Token buckets (the plan's REST budget, per-user rates), with an injectable clock for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MAX_RATE_LIMIT_WAIT = 60.0
"""Alpaca counts per minute: no honest 429 asks for a longer wait (larger = clock skew)."""


def retry_wait(
    retry_after: str | None, reset: str | None, now: float | None = None
) -> float | None:
    """Seconds to wait after a 429: the later of `Retry-After` (seconds) and `X-RateLimit-Reset`
    (epoch seconds, what Alpaca sends), capped at a minute; None when neither is usable."""
    waits: list[float] = []
    for text, is_epoch in ((retry_after, False), (reset, True)):
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            continue
        if is_epoch:
            value -= time.time() if now is None else now
        if value == value:  # not NaN
            waits.append(max(0.0, value))
    return min(max(waits), MAX_RATE_LIMIT_WAIT) if waits else None


class TokenBucket:
    """`rate_per_min` tokens per minute, bursting up to `burst`; `acquire` waits for a token,
    `try_take` never waits."""

    def __init__(
        self,
        rate_per_min: float,
        burst: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be positive")
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

    def try_take(self) -> float:
        """Take a token if there is one (return 0.0); else take nothing and return the seconds
        until one will be there."""
        wait = self.wait_time()
        if wait == 0.0:
            self.tokens -= 1
        return wait

    def give_back(self) -> None:
        """Return a token taken by `try_take` that was not used."""
        self.tokens = min(self.capacity, self.tokens + 1)

    @property
    def full(self) -> bool:
        """No token taken for a while (an idle user's bucket can be forgotten)."""
        self._refill()
        return self.tokens >= self.capacity

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


class KeyedBuckets:
    """One bucket per key (user), created on first use; idle (full) buckets are forgotten when
    more than `max_keys` exist, so memory stays bounded whatever the number of callers."""

    def __init__(self, max_keys: int = 50_000, monotonic: Callable[[], float] = time.monotonic):
        self.max_keys = max_keys
        self._now = monotonic
        self._buckets: dict[str, tuple[float, int, TokenBucket]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: str, rate_per_min: float, burst: int) -> TokenBucket:
        """The bucket of `key` at this rate (a changed rate, e.g. a new tier, starts afresh)."""
        held = self._buckets.get(key)
        if held is not None and held[0] == rate_per_min and held[1] == burst:
            return held[2]
        if held is None and len(self._buckets) >= self.max_keys:
            self._prune()
        bucket = TokenBucket(rate_per_min, burst, self._now)
        if held is not None:  # keep what the key already spent: a rate change is no refill
            bucket.tokens = min(bucket.capacity, held[2].tokens)
        self._buckets[key] = (rate_per_min, burst, bucket)
        return bucket

    def try_take(self, key: str, rate_per_min: float, burst: int) -> float:
        """0.0 when `key` may go ahead now (a token taken), else the seconds to wait."""
        return self.bucket(key, rate_per_min, burst).try_take()

    def _prune(self) -> None:
        idle = [k for k, (_, _, b) in self._buckets.items() if b.full]
        for k in idle:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest half
            for k in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[k]


class SharedBudget:
    """The account's Alpaca REST budget, split in two pools that together never exceed it.

    `reserved` (rate x `reserved_share`) is only for internal service clients (the `/alpaca`
    passthrough the end-of-day settler uses, the hub's own backfill); `users` (the rest) serves
    the HTTP API's users and never waits. Internal callers take from their reserve first and
    may borrow whatever the users' pool holds, so an idle user share is not wasted; users can
    never take from the reserve, so the internal rate is guaranteed whatever users do.
    """

    def __init__(
        self,
        rate_per_min: float,
        reserved_share: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < reserved_share < 1:
            raise ValueError("reserved_share must be between 0 and 1 (exclusive)")
        self.rate_per_min = rate_per_min
        # bursts of ten seconds' worth: Alpaca counts per minute, so short bursts are safe
        reserved, users = rate_per_min * reserved_share, rate_per_min * (1 - reserved_share)
        self.reserved = TokenBucket(reserved, max(1, int(reserved // 6)), monotonic)
        self.users = TokenBucket(users, max(1, int(users // 6)), monotonic)
        self._lock = asyncio.Lock()

    @property
    def users_rate_per_min(self) -> float:
        """The users' pool, tokens per minute."""
        return self.users.rate * 60

    def try_user(self) -> float:
        """A user's upstream call: 0.0 when it may go now, else seconds until the pool refills."""
        return self.users.try_take()

    def try_internal(self) -> float:
        """An internal call without waiting: the reserve first, then the users' pool."""
        wait = self.reserved.try_take()
        if wait == 0.0:
            return 0.0
        other = self.users.try_take()
        return 0.0 if other == 0.0 else min(wait, other)

    async def acquire_internal(self) -> float:
        """Wait (FIFO among internal callers) for a token; return the seconds waited. Bound it
        with `asyncio.timeout`: a cancelled wait takes nothing."""
        waited = 0.0
        async with self._lock:
            while (wait := self.try_internal()) > 0:
                await asyncio.sleep(wait)
                waited += wait
        return waited

    def drain(self, seconds: float) -> None:
        """Upstream said 429: both pools stop for about `seconds`."""
        self.reserved.drain(seconds)
        self.users.drain(seconds)
