"""tier-gate's core: entitlement cache, credential issuance, tier changes, revocation pushes."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OKPKey
from raxx_contracts import TierPolicy

from tier_gate import domain, identity, natsjwt
from tier_gate.adapters.postgres import Database, IssuedCredential, TierApplied
from tier_gate.errors import BadRequestError
from tier_gate.keys import SigningMaterial
from tier_gate.metrics import Metrics

log = logging.getLogger(__name__)
_CACHE_MAX = 200_000


class GroupCommitter:
    """Batches credential records into one INSERT per flush; callers await their batch.

    A credential is handed out only after its key is durably recorded (so a later downgrade
    can revoke it), without paying one database round trip per request.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[IssuedCredential, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def record(self, cred: IssuedCredential) -> None:
        """Queue one record and wait until it is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((cred, fut))
        self._wake.set()
        await fut

    async def run(self) -> None:
        """Flush loop (a supervised background task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await self._db.record_credentials([c for c, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


@dataclass
class RevocationPusher:
    """Keeps the server's MD account JWT carrying the current revocation set."""

    db: Database
    signing: SigningMaterial
    policy: TierPolicy
    push: Callable[[str, str], Any]
    """async (account_pub, account_jwt) -> reply text."""
    metrics: Metrics
    interval: float = 30.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last_iat: int = 0

    def account_jwt(self, revocations: dict[str, int]) -> str:
        """The MD account JWT as `init` wrote it, plus `revocations`."""
        claims = domain.account_claims(
            "MD",
            self.signing.md_account,
            jetstream=True,
            scoped_keys=self.signing.tier_public_keys(),
            policy=self.policy,
            revocations=revocations,
        )
        # The server keeps the newer of two account JWTs; never go back in time.
        self._last_iat = max(int(time.time()), self._last_iat)
        return natsjwt.encode(claims, self.signing.operator_signing, iat=self._last_iat)

    async def push_now(self) -> int:
        """Push the current set; return its size. Raises on failure (counted)."""
        async with self._lock:
            revocations = await self.db.revocations(int(time.time()))
            try:
                await self.push(self.signing.md_account, self.account_jwt(revocations))
            except Exception:
                self.metrics.revocation_push_failures.inc()
                raise
            self.metrics.revocations_pushed.inc()
            return len(revocations)

    async def run(self) -> None:
        """Re-push periodically (a restarted MEMORY-resolver server forgets pushes)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.push_now()
            except Exception as exc:
                log.warning("periodic revocation push failed: %s", exc)


@dataclass
class TierGate:
    """Entitlements and credential issuance (the service object handlers call)."""

    db: Database
    policy: TierPolicy
    signing: SigningMaterial
    http_key: OKPKey
    metrics: Metrics
    committer: GroupCommitter
    pusher: RevocationPusher
    credential_ttl: int | None = None
    cache_seconds: float = 30.0
    _cache: dict[str, tuple[str, float]] = field(default_factory=dict)
    _generation: dict[str, int] = field(default_factory=dict)
    _changing: dict[str, asyncio.Event] = field(default_factory=dict)

    async def tier_of(self, user_id: str) -> str:
        """The user's current tier (cached; unknown users get the default tier)."""
        hit = self._cache.get(user_id)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        stored = await self.db.get_tier(user_id)
        tier = stored[0] if stored and stored[0] in self.policy.tiers else self.policy.default_tier
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[user_id] = (tier, now + self.cache_seconds)
        return tier

    async def issue(self, user_id: str, public_key: str | None = None) -> dict[str, Any]:
        """Mint a NATS credential + HTTP token for the user's current tier (token response)."""
        if public_key is not None and not _is_user_key(public_key):
            raise BadRequestError("public_key must be a NATS user public key (U...)")
        while True:
            generation = self._generation.get(user_id, 0)
            if (changing := self._changing.get(user_id)) is not None:
                await changing.wait()
                continue
            tier = await self.tier_of(user_id)
            response, cred = self._mint(user_id, tier, public_key)
            await self.committer.record(cred)
            if self._generation.get(user_id, 0) == generation:
                self.metrics.issued.labels(tier).inc()
                return response
            # A tier change raced this issuance: mint again for the new tier.

    def _mint(
        self, user_id: str, tier: str, public_key: str | None
    ) -> tuple[dict[str, Any], IssuedCredential]:
        now = int(time.time())
        ttl = self.credential_ttl or self.policy.rule(tier).credential_ttl_seconds
        expires_at = now + ttl
        seed = None
        if public_key is None:
            seed = natsjwt.new_seed("user")
            public_key = natsjwt.public_key(seed)
        claims = domain.user_claims(
            user_id=user_id,
            user_pub=public_key,
            account_pub=self.signing.md_account,
            expires_at=expires_at,
        )
        user_jwt = natsjwt.encode(claims, self.signing.tier_keys[tier], iat=now)
        response = {
            "tier": tier,
            "expires_at": dt.datetime.fromtimestamp(expires_at, dt.UTC).isoformat(),
            "ttl_seconds": ttl,
            "subjects": domain.granted(self.policy, tier, user_id),
            "nats": {
                "jwt": user_jwt,
                "seed": seed,
                "creds": natsjwt.creds_text(user_jwt, seed) if seed else None,
            },
            "http_token": identity.http_token(self.http_key, user_id, tier, expires_at, now),
        }
        return response, IssuedCredential(public_key, user_id, tier, now, expires_at)

    async def apply_tier(self, user_id: str, tier: str, version: int | None) -> TierApplied:
        """Apply a tier change (version None = next, dev); revoke and push on a downgrade."""
        self.policy.rule(tier)
        self._generation[user_id] = self._generation.get(user_id, 0) + 1
        event = self._changing.setdefault(user_id, asyncio.Event())
        try:
            result = await self.db.apply_tier(
                user_id,
                tier,
                version,
                revoke_for=self._revoke_for,
                default_tier=self.policy.default_tier,
                now=int(time.time()),
            )
            if result.applied:
                self._cache[user_id] = (tier, time.monotonic() + self.cache_seconds)
            else:
                self._cache.pop(user_id, None)
        finally:
            if self._changing.get(user_id) is event:
                del self._changing[user_id]
            event.set()
        if result.revoked:
            self.metrics.credentials_revoked.inc(len(result.revoked))
            await self.pusher.push_now()
        return result

    def _revoke_for(self, old_tier: str, new_tier: str) -> tuple[str, ...]:
        if old_tier not in self.policy.tiers:
            return tuple(t for t in self.policy.tier_order if t != new_tier)
        return domain.tiers_above(self.policy, new_tier)


def _is_user_key(key: str) -> bool:
    return natsjwt.is_public_key(key, "U")
