"""Every Alpaca REST call passes here: shared token bucket, coalescing, a short cache, 429 retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from market_data_hub.adapters.alpaca import AlpacaRest, RateLimitedError
from market_data_hub.domain import Backoff
from market_data_hub.domain.ratelimit import TokenBucket
from market_data_hub.errors import HubError, RetryableError
from market_data_hub.metrics import Metrics


class RestGateway:
    """Budgeted, coalesced, briefly cached access to Alpaca REST."""

    def __init__(
        self,
        client: AlpacaRest,
        rate_per_min: int,
        cache_seconds: float,
        max_retries: int,
        metrics: Metrics,
    ) -> None:
        self.client = client
        self.bucket = TokenBucket(rate_per_min)
        self.cache_seconds = cache_seconds
        self.max_retries = max_retries
        self.metrics = metrics
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self._cache: dict[Hashable, tuple[float, Any]] = {}

    async def call(
        self, endpoint: str, key: Hashable, fn: Callable[[AlpacaRest], Awaitable[Any]]
    ) -> Any:
        """Run `fn` once for all concurrent callers with the same `key`; cache the answer."""
        full = (endpoint, key)
        hit = self._cache.get(full)
        if hit is not None and hit[0] > time.monotonic():
            self.metrics.rest_coalesced.labels("cache").inc()
            return hit[1]
        fut = self._inflight.get(full)
        if fut is not None:
            self.metrics.rest_coalesced.labels("inflight").inc()
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[full] = fut
        try:
            result = await self._attempts(endpoint, fn)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(full, None)
        fut.set_result(result)
        if self.cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[full] = (time.monotonic() + self.cache_seconds, result)
        return result

    async def _attempts(self, endpoint: str, fn: Callable[[AlpacaRest], Awaitable[Any]]) -> Any:
        backoff = Backoff(1.0, 8.0)
        retry_after = 1.0
        for attempt in range(self.max_retries + 1):
            waited = await self.bucket.acquire()
            self.metrics.rest_limiter_wait.observe(waited)
            try:
                result = await fn(self.client)
            except RateLimitedError as exc:
                self.metrics.rest_calls.labels(endpoint, "429").inc()
                retry_after = exc.reset_in or backoff.next()
                self.bucket.drain(retry_after)
                if attempt < self.max_retries:
                    await asyncio.sleep(min(retry_after, 10.0))
                continue
            except HubError as exc:
                self.metrics.rest_calls.labels(endpoint, exc.code).inc()
                raise
            self.metrics.rest_calls.labels(endpoint, "ok").inc()
            return result
        raise RetryableError(
            "Alpaca is rate limiting market-data requests; try again shortly",
            retry_after=max(1.0, retry_after),
        )
