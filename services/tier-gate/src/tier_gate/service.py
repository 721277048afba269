"""tier-gate's core: entitlement cache, credential issuance, tier changes, revocation pushes."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OKPKey
from raxx_contracts import TierChanged, TierPolicy
from raxx_service_kit.clock import Clock, SystemClock
from raxx_service_kit.nats import creds_text

from tier_gate import domain, identity, natsjwt
from tier_gate.adapters.postgres import Database, IssuedCredential, StoredTier, TierApplied
from tier_gate.errors import BadRequestError, PublicKeyTakenError, UnknownTierError
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
        self._pending: list[tuple[IssuedCredential, asyncio.Future[StoredTier | None]]] = []
        self._wake = asyncio.Event()

    async def record(self, cred: IssuedCredential) -> StoredTier | None:
        """Queue one record, wait until it is committed; return the user's stored tier then.

        The returned (tier, version) is what PostgreSQL held at the commit (None: no row).
        """
        fut: asyncio.Future[StoredTier | None] = asyncio.get_running_loop().create_future()
        self._pending.append((cred, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        """Flush loop (a supervised background task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                recorded = await self._db.record_credentials([c for c, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for cred, fut in batch:
                if fut.done():
                    continue
                if (cred.user_pub, cred.user_id) in recorded.taken:
                    fut.set_exception(PublicKeyTakenError())
                else:
                    fut.set_result(recorded.stored.get(cred.user_id))


@dataclass
class RevocationPusher:
    """Keeps the server's MD account JWT carrying the current revocation set.

    Every push (downgrade, start-up, periodic; any replica) is derived from PostgreSQL, the
    single source of truth, under a cluster-wide lock (`Database.push_revocations`): replicas
    never clobber each other's revocations with a partial or older set.
    """

    db: Database
    signing: SigningMaterial
    policy: TierPolicy
    push: Callable[[str, str], Any]
    """async (account_pub, account_jwt) -> reply text."""
    metrics: Metrics
    interval: float = 30.0
    clock: Clock = field(default_factory=SystemClock)

    def account_jwt(self, revocations: dict[str, int], iat: int) -> str:
        """The MD account JWT as `init` wrote it, plus `revocations`, issued at `iat`."""
        claims = domain.account_claims(
            "MD",
            self.signing.md_account,
            jetstream=True,
            scoped_keys=self.signing.tier_public_keys(),
            policy=self.policy,
            revocations=revocations,
        )
        return natsjwt.encode(claims, self.signing.operator_signing, iat=iat)

    async def push_now(self) -> int:
        """Push the stored set; return its size. Raises on failure (counted)."""

        async def _push(revocations: dict[str, int], iat: int) -> None:
            await self.push(self.signing.md_account, self.account_jwt(revocations, iat))

        try:
            now = int(self.clock.now().timestamp())
            count = await self.db.push_revocations(self.signing.md_account, now, _push)
        except Exception:
            self.metrics.revocation_push_failures.inc()
            raise
        self.metrics.revocations_pushed.inc()
        return count

    async def run(self) -> None:
        """Re-push periodically (a restarted MEMORY-resolver server forgets pushes)."""
        while True:
            await self.clock.sleep(self.interval)
            try:
                await self.push_now()
            except Exception as exc:
                log.warning("periodic revocation push failed: %s", exc)


@dataclass
class TierGate:
    """Entitlements and credential issuance (the service object handlers call).

    Safe with several replicas: the cache is versioned and fed by every tier change (each
    replica also listens to `billing.tier.changed` itself), and an issuance is checked
    against the version PostgreSQL holds when its credential commits (see `issue`).
    """

    db: Database
    policy: TierPolicy
    signing: SigningMaterial
    http_key: OKPKey
    metrics: Metrics
    committer: GroupCommitter
    pusher: RevocationPusher
    credential_ttl: int | None = None
    cache_seconds: float = 30.0
    announce: Callable[[TierChanged], Awaitable[Any]] | None = None
    """async (TierChanged) -> None: publish the user's current tier for the hub (NATS KV)."""
    clock: Clock = field(default_factory=SystemClock)
    _cache: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    """user -> (tier, version, fresh until); an expired entry still bounds the version."""

    def observe(self, user_id: str, tier: str, version: int) -> bool:
        """Note a (tier, version) seen for a user; never moves the cache back by version.

        Returns whether the cache changed (an unknown tier means the default tier).
        """
        tier = self._known(tier)
        hit = self._cache.get(user_id)
        if hit is not None and hit[1] > version:
            return False
        if hit is None and len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[user_id] = (tier, version, self.clock.monotonic() + self.cache_seconds)
        return hit is None or hit[:2] != (tier, version)

    async def tier_of(self, user_id: str) -> tuple[str, int]:
        """The user's current (tier, version) (cached; unknown users: default tier, 0)."""
        hit = self._cache.get(user_id)
        if hit is not None and hit[2] > self.clock.monotonic():
            return hit[0], hit[1]
        stored = await self.db.get_tier(user_id) or (self.policy.default_tier, 0)
        hit = self._cache.get(user_id)
        if hit is not None and hit[1] > stored[1]:
            stored = hit[0], hit[1]  # an event this replica saw is not in PostgreSQL yet
        self.observe(user_id, *stored)
        return self._cache[user_id][0], self._cache[user_id][1]

    async def issue(self, user_id: str, public_key: str | None = None) -> dict[str, Any]:
        """Mint a NATS credential + HTTP token for the user's current tier (token response).

        The credential is recorded before it is returned; the commit also reads the stored
        (tier, version) under a per-user lock a tier change takes exclusively. If another
        tier was committed meanwhile (by any replica), this credential is discarded unseen
        and re-minted for the stored tier; otherwise any later downgrade revokes it.
        """
        if public_key is not None and not _is_user_key(public_key):
            raise BadRequestError("public_key must be a NATS user public key (U...)")
        tier, version = await self.tier_of(user_id)
        while True:
            response, cred = self._mint(user_id, tier, public_key)
            stored = await self.committer.record(cred) or (self.policy.default_tier, 0)
            self.observe(user_id, *stored)
            if stored[1] <= version or self._known(stored[0]) == tier:
                self.metrics.issued.labels(tier).inc()
                return response
            # A tier change committed after we read the tier: mint for the stored tier.
            tier, version = self._cache[user_id][0], self._cache[user_id][1]

    def _mint(
        self, user_id: str, tier: str, public_key: str | None
    ) -> tuple[dict[str, Any], IssuedCredential]:
        now = int(self.clock.now().timestamp())
        ttl = self.credential_ttl or self.policy.rule(tier).credential_ttl_seconds
        expires_at = now + ttl
        seed = None
        client_key = public_key is not None
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
                "creds": creds_text(user_jwt, seed) if seed else None,
            },
            "http_token": identity.http_token(self.http_key, user_id, tier, expires_at, now),
        }
        return response, IssuedCredential(public_key, user_id, tier, now, expires_at, client_key)

    async def apply_tier(self, user_id: str, tier: str, version: int | None) -> TierApplied:
        """Apply a tier change (version None = next, dev); revoke and push on a downgrade."""
        if tier not in self.policy.tiers:
            raise UnknownTierError(f"unknown tier {tier!r}")
        result = await self.db.apply_tier(
            user_id,
            tier,
            version,
            revoke_for=self._revoke_for,
            default_tier=self.policy.default_tier,
            now=int(self.clock.now().timestamp()),
        )
        current: tuple[str, int] | None = None
        if result.applied:
            current = (tier, result.version)
        elif result.old_tier is not None and result.old_version is not None:
            current = (result.old_tier, result.old_version)
        if current is not None:
            self.observe(user_id, *current)
        jobs: list[Awaitable[Any]] = []
        if current is not None and self.announce is not None:
            # Every time, applied or not: a redelivered event re-announces what is stored,
            # so an announcement lost to a NATS outage is made good by the retry.
            event = TierChanged(
                user_id=user_id, tier=current[0], version=current[1], timestamp=self.clock.now()
            )
            jobs.append(self.announce(event))
        if result.revoked:
            self.metrics.credentials_revoked.inc(len(result.revoked))
            jobs.append(self.pusher.push_now())
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return result

    def _known(self, tier: str) -> str:
        return tier if tier in self.policy.tiers else self.policy.default_tier

    def _revoke_for(self, old_tier: str, new_tier: str) -> tuple[str, ...]:
        if old_tier not in self.policy.tiers:
            return tuple(t for t in self.policy.tier_order if t != new_tier)
        return domain.tiers_above(self.policy, new_tier)


def _is_user_key(key: str) -> bool:
    return natsjwt.is_public_key(key, "U")
