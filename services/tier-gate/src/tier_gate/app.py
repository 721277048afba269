"""FastAPI app factory; the lifespan connects everything (nothing happens at import)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from joserfc.jwk import KeySet
from nats.aio.client import Client
from nats.aio.msg import Msg
from raxx_contracts import TierChanged, default_policy, subjects

from tier_gate import api, domain, handlers, keys, natsjwt
from tier_gate.adapters import nats as nats_adapter
from tier_gate.adapters.postgres import Database, DbTimeouts
from tier_gate.adapters.vault import Vault
from tier_gate.deps import Deps, Runtime
from tier_gate.errors import ConfigError
from tier_gate.identity import IdentityVerifier
from tier_gate.metrics import Metrics
from tier_gate.readiness import Check, Readiness
from tier_gate.service import GroupCommitter, RevocationPusher, TierGate
from tier_gate.settings import Settings

log = logging.getLogger(__name__)


async def _service_client(settings: Settings, vault: Vault, name: str, *, sys: bool) -> Client:
    path = settings.nats_sys_creds if sys else settings.nats_creds
    text = None
    if path is None:
        stored = await vault.read(keys.service_path(name))
        if stored is None:
            raise ConfigError(f"no NATS credential for {name}: run init or set TG_NATS_CREDS")
        text = natsjwt.creds_text(stored["jwt"], stored["seed"])
    creds = nats_adapter.credentials(path, text)
    return await nats_adapter.connect(settings.nats_url, creds, f"tier-gate/{name}")


async def build_runtime(settings: Settings, deps: Deps | None = None) -> Runtime:
    """Connect to OpenBao, PostgreSQL and NATS, load keys, start supervised tasks."""
    deps = deps or Deps()
    policy = default_policy()
    metrics = Metrics()
    vault = deps.vault or Vault(settings.vault)
    timeouts = DbTimeouts(
        pool=settings.db_pool_timeout,
        operation=settings.db_operation_timeout,
        statement=settings.db_statement_timeout,
        connect=settings.db_connect_timeout,
    )
    db = deps.db or Database(
        settings.database_url, max_size=settings.db_pool_max, timeouts=timeouts
    )
    await db.open()
    signing = await keys.load_signing(vault, policy.tier_order)
    http_key = keys.okp_from_secret(await vault.read(keys.PATH_HTTP_KEY), keys.PATH_HTTP_KEY)
    dev_key = None
    if settings.env == "dev":
        dev_key = keys.okp_from_secret(
            await vault.read(keys.PATH_DEV_IDENTITY), keys.PATH_DEV_IDENTITY
        )
    if settings.identity_jwks_url:
        verifier = IdentityVerifier(
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
            jwks_url=settings.identity_jwks_url,
        )
    elif dev_key is None:
        raise ConfigError("TG_IDENTITY_JWKS_URL is required outside dev")
    else:
        verifier = IdentityVerifier(
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
            keys=KeySet.import_key_set(keys.public_jwks(dev_key)),  # type: ignore[arg-type]
        )
    nc = await _service_client(settings, vault, "tier-gate", sys=False)
    sys_nc = await _service_client(settings, vault, domain.SYS_SERVICE, sys=True)
    await nats_adapter.ensure_billing_stream(nc)
    # Entries must outlive every token issued before the change they record.
    longest = max(
        [policy.rule(t).credential_ttl_seconds for t in policy.tier_order]
        + [settings.credential_ttl or 0]
    )
    tiers_kv = await nats_adapter.user_tiers_bucket(nc, max_age=longest + 120)

    async def announce(event: TierChanged) -> None:
        await nats_adapter.announce_tier(tiers_kv, event)

    async def push(account: str, jwt: str) -> str:
        return await nats_adapter.push_account_jwt(sys_nc, account, jwt)

    committer = GroupCommitter(db)
    pusher = RevocationPusher(
        db, signing, policy, push, metrics, interval=settings.revocation_repush_seconds
    )
    gate = TierGate(
        db=db,
        policy=policy,
        signing=signing,
        http_key=http_key,
        metrics=metrics,
        committer=committer,
        pusher=pusher,
        credential_ttl=settings.credential_ttl,
        cache_seconds=settings.entitlement_cache_seconds,
        announce=announce,
    )
    rt = Runtime(
        settings=settings,
        metrics=metrics,
        db=db,
        vault=vault,
        gate=gate,
        verifier=verifier,
        http_jwks=keys.public_jwks(http_key),
        dev_identity_key=dev_key,
        nc=nc,
        sys_nc=sys_nc,
    )
    try:
        await verifier.load()
    except Exception as exc:
        log.warning("identity JWKS not loaded yet: %s", exc)
    # Every replica hears every tier change (a core subscription next to the shared durable
    # consumer), so its cache never serves a tier another replica has already replaced.

    async def on_broadcast(msg: Msg) -> None:
        await handlers.on_tier_broadcast(gate, msg)

    await nc.subscribe(subjects.BILLING_TIER_CHANGED, cb=on_broadcast)
    await nc.flush()
    # Revocations persist across restarts: re-push the stored set before serving.
    count = await pusher.push_now()
    log.info("revocation set re-pushed (%d entries)", count)

    async def billing() -> None:
        async for batch in nats_adapter.billing_batches(nc, settings.billing_durable):
            for msg in batch:
                await handlers.on_tier_changed(gate, metrics, msg)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(3600)
            await db.prune(int(time.time()))

    rt.readiness = _readiness(rt)
    await rt.readiness.tick()
    rt.supervise("readiness", rt.readiness.run)
    rt.supervise("group-commit", committer.run)
    rt.supervise("revocation-push", pusher.run)
    rt.supervise("billing", billing)
    rt.supervise("housekeeping", housekeeping)
    return rt


def _readiness(rt: Runtime) -> Readiness:
    """What `/readyz` reports: PostgreSQL and identity keys are essential (issuance stops
    without them); NATS, its system account and OpenBao only degrade this replica."""

    async def nats_ok(nc: Client) -> None:
        if not nc.is_connected:
            state = "reconnecting" if nc.is_reconnecting else "closed" if nc.is_closed else "down"
            last = f", last error: {nc.last_error!r}" if nc.last_error else ""
            raise ConnectionError(f"{state}{last}")
        await nc.flush(timeout=1)

    async def vault_ok() -> None:
        if not await rt.vault.ping():
            raise ConnectionError("OpenBao did not answer, or is sealed")

    async def identity_ok() -> None:
        await rt.verifier.load()

    checks = [
        Check("postgres", lambda: rt.db.ping(timeout=2.0), True, "credentials cannot be recorded"),
        Check("identity-keys", identity_ok, True, "identity tokens cannot be verified"),
        Check(
            "nats",
            lambda: nats_ok(rt.nc),
            False,
            "tier changes not received or announced to the hub until it is back",
        ),
        Check("nats-system", lambda: nats_ok(rt.sys_nc), False, "revocations not pushed"),
        Check("openbao", vault_ok, False, "keys already loaded; only a restart needs it"),
    ]
    return Readiness(checks, interval=rt.settings.readiness_interval, extra=rt.live_conditions)


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """The tier-gate ASGI app; connects in its lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await build_runtime(settings, deps)
        app.state.runtime = rt
        # Long-lived objects (keys, policy, pools, modules) leave the GC's scans: shorter
        # collection pauses under load (a p99 concern, measured by scripts/bench_tier_gate.py).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="tier-gate", version="0.1.0", lifespan=lifespan)
    app.include_router(api.router)
    api.install_error_handlers(app)
    return app
