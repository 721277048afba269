"""Every Alpaca REST call passes here: the shared budget, coalescing, a short cache, 429 retry.

The budget (`SharedBudget`) has a users' pool and a reserve for internal service clients. A
user's call (`caller` set) never waits: the answer is cached or in flight for an identical
request (free), or it takes a token from the caller's own upstream quota and from the users'
pool at once, or it is refused (`upstream_quota` 429 / `budget_exhausted` 503, Retry-After).
Internal calls (`caller` None: the hub's backfill) wait for the reserve, then borrow.

Every upstream request takes its own token: a paginated call (`call_pages`, the option chain)
admits each page like a call of its own, so a chain of ten pages costs ten tokens. A 429's wait
comes from `X-RateLimit-Reset` (epoch seconds, what Alpaca sends) or `Retry-After`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from market_data_hub.adapters.alpaca import AlpacaRest, RateLimitedError
from market_data_hub.domain import Backoff
from market_data_hub.domain.ratelimit import KeyedBuckets, SharedBudget
from market_data_hub.errors import (
    BudgetExhaustedError,
    HubError,
    RetryableError,
    TooManyRequestsError,
    UpstreamError,
)
from market_data_hub.metrics import Metrics
from market_data_hub.settings import Settings

T = TypeVar("T")
PageFn = Callable[[AlpacaRest, str | None], Awaitable[tuple[dict[str, Any], str | None]]]
MAX_PAGES = 50
"""Pages one paginated call may follow (50 chain pages = 50,000 contracts)."""


class RestGateway:
    """Budgeted, coalesced, briefly cached access to Alpaca REST."""

    def __init__(self, client: AlpacaRest, settings: Settings, metrics: Metrics) -> None:
        self.client = client
        self.budget = SharedBudget(settings.rest_rate_per_min, settings.rest_reserved_share)
        self.user_quota = KeyedBuckets()
        per_user = self.budget.users_rate_per_min * settings.rest_user_max_share
        self.user_quota_per_min = max(1.0, per_user)
        self.user_quota_burst = max(1, int(self.user_quota_per_min // 6))  # ten seconds' worth
        self.cache_seconds = settings.rest_cache_seconds
        self.max_retries = settings.rest_max_retries
        self.metrics = metrics
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self._cache: dict[Hashable, tuple[float, Any]] = {}

    async def call(
        self,
        endpoint: str,
        key: Hashable,
        fn: Callable[[AlpacaRest], Awaitable[Any]],
        caller: str | None = None,
    ) -> Any:
        """Run `fn` (one upstream request) once for all concurrent callers with the same `key`;
        cache the answer.

        `caller`: the user on whose behalf (never waits), or None for the hub's own work.
        """
        return await self._shared(
            endpoint, key, caller, lambda: self._request(endpoint, fn, caller)
        )

    async def call_pages(
        self, endpoint: str, key: Hashable, page: PageFn, caller: str | None = None,
        max_pages: int = MAX_PAGES,
    ) -> dict[str, Any]:  # fmt: skip
        """A paginated upstream call (`page(client, token)` -> (data, next token)) merged into
        one dict, coalesced and cached like `call`; each page is charged to the budget (and to
        `caller`'s quota, refused like a call of its own) as a request of its own."""

        async def run() -> dict[str, Any]:
            merged: dict[str, Any] = {}
            token: str | None = None
            for n in range(max_pages):
                if n > 0 and caller is not None:
                    self._admit_user(caller)  # the first page was admitted by `_shared`

                async def one(
                    c: AlpacaRest, tok: str | None = token
                ) -> tuple[dict[str, Any], str | None]:
                    return await page(c, tok)

                data, token = await self._request(endpoint, one, caller)
                merged.update(data)
                if not token:
                    return merged
            raise UpstreamError(
                f"the answer is larger than {max_pages} upstream pages; narrow the request",
                detail=f"{endpoint} {key!r}: more than {max_pages} pages",
            )

        result: dict[str, Any] = await self._shared(endpoint, key, caller, run)
        return result

    async def _shared(
        self, endpoint: str, key: Hashable, caller: str | None, run: Callable[[], Awaitable[Any]]
    ) -> Any:
        full = (endpoint, key)
        hit = self._cache.get(full)
        if hit is not None and hit[0] > time.monotonic():
            self.metrics.rest_coalesced.labels("cache").inc()
            return hit[1]
        fut = self._inflight.get(full)
        if fut is not None:
            self.metrics.rest_coalesced.labels("inflight").inc()
            return await asyncio.shield(fut)
        if caller is not None:
            self._admit_user(caller)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[full] = fut
        try:
            result = await run()
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

    async def _request(
        self, endpoint: str, fn: Callable[[AlpacaRest], Awaitable[T]], caller: str | None
    ) -> T:
        """One upstream request: a user's (admitted before, never waits or retries) or an
        internal one (waits for the budget, retries 429s)."""
        if caller is None:
            return await self._attempts(endpoint, fn, self.max_retries, admitted=False)
        return await self._attempts(endpoint, fn, 0, admitted=True)

    def _admit_user(self, caller: str) -> None:
        """Take the caller's upstream quota and a users' pool token now, or refuse at once."""
        mine = self.user_quota.bucket(caller, self.user_quota_per_min, self.user_quota_burst)
        wait = mine.try_take()
        if wait > 0:
            self.metrics.rate_limited.labels("upstream_quota").inc()
            raise TooManyRequestsError(
                "too many uncached market-data requests from this user; "
                "repeat identical requests (they are cached) or slow down",
                retry_after=wait, code="upstream_quota",
            )  # fmt: skip
        wait = self.budget.try_user()
        if wait > 0:
            mine.give_back()
            self.metrics.rate_limited.labels("budget_exhausted").inc()
            raise BudgetExhaustedError(
                "the hub's market-data budget for user requests is spent for now; "
                "try again shortly",
                retry_after=wait,
            )

    async def _attempts(
        self, endpoint: str, fn: Callable[[AlpacaRest], Awaitable[T]], retries: int,
        admitted: bool,
    ) -> T:  # fmt: skip
        backoff = Backoff(1.0, 8.0)
        retry_after = 1.0
        for attempt in range(retries + 1):
            if not admitted or attempt > 0:
                self.metrics.rest_limiter_wait.observe(await self.budget.acquire_internal())
            try:
                result = await fn(self.client)
            except RateLimitedError as exc:
                self.metrics.rest_calls.labels(endpoint, "429").inc()
                retry_after = exc.reset_in or backoff.next()
                self.budget.drain(retry_after)
                if attempt < retries:
                    await asyncio.sleep(min(retry_after, 10.0))
                continue
            except HubError as exc:
                self.metrics.rest_calls.labels(endpoint, exc.code).inc()
                raise
            self.metrics.rest_calls.labels(endpoint, "ok").inc()
            return result
        raise RetryableError(
            "the market-data provider is rate limiting the hub; try again shortly",
            retry_after=max(1.0, retry_after),
        )
