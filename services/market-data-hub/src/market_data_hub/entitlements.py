"""Users' current tiers as tier-gate records them, so a downgrade supersedes HTTP tokens.

tier-gate writes each user's applied tier into the KV bucket `subjects.USER_TIERS_BUCKET`
on every tier change. An HTTP token names the tier it was issued for and lives up to 15
minutes; before honouring a token above the lowest tier, the hub reads the user's entry
(cached for `cache_seconds`) and refuses the token (401 `token_superseded`) when its tier
ranks above the current one. A downgrade therefore reaches every replica's HTTP API within
`cache_seconds` plus one KV read.

Fail safe: when the bucket cannot be read within `timeout` (NATS down or frozen, bucket
missing) a token above the lowest tier is refused with 503 `entitlements_unavailable` and
`Retry-After`, for `retry_seconds`, instead of serving real-time data on a tier that may be
gone. Lowest-tier tokens have nothing to lose and are served as usual.
"""

from __future__ import annotations

import asyncio
import time

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from raxx_contracts import DecodeError, TierChanged, TierPolicy, decode, subjects

from market_data_hub.auth import Caller
from market_data_hub.errors import EntitlementsUnavailableError, TokenSupersededError

_CACHE_MAX = 100_000


class TierView:
    """Reads (and briefly caches) users' current tiers from tier-gate's KV bucket."""

    def __init__(
        self,
        js: JetStreamContext,
        policy: TierPolicy,
        *,
        cache_seconds: float = 1.0,
        timeout: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self._js = js
        self._policy = policy
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._kv: KeyValue | None = None
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._unavailable_until = 0.0
        self.problem: str | None = None
        """Why the bucket could not be read last time (None: the last read worked)."""

    async def check(self, who: Caller) -> None:
        """Raise unless `who`'s token tier is still within the user's current tier."""
        if self._policy.rank(who.tier) == 0:
            return
        current = await self.current(who.user_id)
        if current is None or current not in self._policy.tiers:
            return
        if self._policy.rank(who.tier) > self._policy.rank(current):
            raise TokenSupersededError(
                f"this token was issued for tier {who.tier!r}; the account is now "
                f"{current!r}: get a new token from tier-gate (POST /v1/tokens)"
            )

    async def current(self, user_id: str) -> str | None:
        """The tier tier-gate last applied for `user_id` (None: no change on record)."""
        now = time.monotonic()
        hit = self._cache.get(user_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        if now < self._unavailable_until:
            raise EntitlementsUnavailableError(
                "current tiers cannot be read right now; retry shortly", self.retry_seconds
            )
        try:
            async with asyncio.timeout(self.timeout):
                tier = await self._read(user_id)
        except (TimeoutError, nats.errors.Error) as exc:
            self._kv = None
            self.problem = f"{type(exc).__name__}: {exc}".strip()[:200]
            self._unavailable_until = time.monotonic() + self.retry_seconds
            raise EntitlementsUnavailableError(
                "current tiers cannot be read right now; retry shortly", self.retry_seconds
            ) from None
        self.problem = None
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {u: v for u, v in self._cache.items() if now - v[0] < self.cache_seconds}
        self._cache[user_id] = (now, tier)
        return tier

    async def _read(self, user_id: str) -> str | None:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.USER_TIERS_BUCKET)
        try:
            entry = await self._kv.get(subjects.user_tier_key(user_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return decode(TierChanged, entry.value).tier
        except DecodeError:
            return None
