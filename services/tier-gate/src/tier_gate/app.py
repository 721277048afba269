"""FastAPI app factory; the lifespan connects everything (nothing happens at import).

From the service kit: settings base, error mapping (`install_error_handlers`), `/healthz`
`/readyz` `/metrics` (`health_router`), the supervisor, OpenBao (`VaultKV`), NATS connect and
`.creds` text, the identity-token verifier (`JwtVerifier`), the control plane on faststream
(`make_broker`, `control_router`) and its AsyncAPI document (`/asyncapi.json`,
`/docs/asyncapi`). tier-gate keeps its domain, keys, SQL, streams and metric names.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.nats import NatsBroker
from joserfc.jwk import KeySet, OKPKey
from raxx_contracts import TierChanged, default_policy, subjects
from raxx_service_kit.http import Check, Readiness, service_app
from raxx_service_kit.jwt import JwtVerifier
from raxx_service_kit.messaging import make_broker
from raxx_service_kit.supervisor import Supervisor

from tier_gate import api, handlers, keys
from tier_gate.adapters.nats import NatsBus, service_credentials, use_credentials
from tier_gate.adapters.postgres import Database, DbTimeouts
from tier_gate.adapters.vault import Vault
from tier_gate.deps import Deps, Runtime
from tier_gate.errors import ConfigError
from tier_gate.metrics import Metrics
from tier_gate.readiness import Probe, Probes
from tier_gate.service import GroupCommitter, RevocationPusher, TierGate
from tier_gate.settings import Settings

log = logging.getLogger(__name__)
BROKER_START_TIMEOUT = 10.0


def _verifier(settings: Settings, dev_key: OKPKey | None) -> JwtVerifier:
    """The kit's verifier: the configured JWKS, or in dev the dev identity key."""
    if settings.identity_jwks_url:
        return JwtVerifier(
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
            jwks_url=settings.identity_jwks_url,
        )
    if dev_key is None:
        raise ConfigError("TG_IDENTITY_JWKS_URL is required outside dev")
    return JwtVerifier(
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        keys=KeySet.import_key_set(keys.public_jwks(dev_key)),  # type: ignore[arg-type]
    )


async def build_runtime(
    settings: Settings, deps: Deps, metrics: Metrics, broker: NatsBroker
) -> Runtime:
    """Connect to OpenBao, PostgreSQL and NATS, load keys; tasks start in `start_runtime`."""
    policy = default_policy()
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
    try:
        signing = await keys.load_signing(vault, policy.tier_order)
        http_key = keys.okp_from_secret(await vault.read(keys.PATH_HTTP_KEY), keys.PATH_HTTP_KEY)
        dev_key = None
        if settings.env == "dev":
            dev_key = keys.okp_from_secret(
                await vault.read(keys.PATH_DEV_IDENTITY), keys.PATH_DEV_IDENTITY
            )
        verifier = _verifier(settings, dev_key)
        bus = deps.bus
        if bus is None:
            # Entries must outlive every token issued before the change they record.
            longest = max(
                [policy.rule(t).credential_ttl_seconds for t in policy.tier_order]
                + [settings.credential_ttl or 0]
            )
            creds = await service_credentials(settings, vault, "tier-gate")
            bus = await NatsBus.open(settings, vault, kv_max_age=longest + 120, creds=creds)
            use_credentials(broker, creds)
    except BaseException:
        await db.close()
        raise
    committer = GroupCommitter(db)
    pusher = RevocationPusher(
        db,
        signing,
        policy,
        bus.push_account,
        metrics,
        interval=settings.revocation_repush_seconds,
        clock=deps.clock,
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
        announce=bus.announce,
        clock=deps.clock,
    )
    supervisor = Supervisor(clock=deps.clock, restarts=metrics.task_restarts)
    return Runtime(
        settings=settings,
        metrics=metrics,
        db=db,
        vault=vault,
        gate=gate,
        verifier=verifier,
        http_jwks=keys.public_jwks(http_key),
        dev_identity_key=dev_key,
        bus=bus,
        supervisor=supervisor,
    )


def _probes(rt: Runtime, broker: NatsBroker) -> Probes:
    """What `/readyz` reports: PostgreSQL and identity keys are critical (issuance stops
    without them); NATS, its system account and OpenBao only degrade this replica."""

    async def nats_ok() -> None:
        await rt.bus.probe()
        if not await broker.ping(1.0):
            raise ConnectionError("the control-plane connection does not answer")

    async def vault_ok() -> None:
        if not await rt.vault.ping():
            raise ConnectionError("OpenBao did not answer, is sealed, or refused the login")

    probes = [
        Probe("postgres", lambda: rt.db.ping(timeout=2.0), True, "credentials cannot be recorded"),
        Probe("identity-keys", rt.verifier.load, True, "identity tokens cannot be verified"),
        Probe(
            "nats",
            nats_ok,
            False,
            "tier changes not received or announced to the hub until it is back",
        ),
        Probe("nats-system", lambda: rt.bus.probe(system=True), False, "revocations not pushed"),
        Probe("openbao", vault_ok, False, "keys already loaded; only a restart needs it"),
    ]
    return Probes(probes, interval=rt.settings.readiness_interval)


async def start_runtime(rt: Runtime, broker: NatsBroker) -> None:
    """Start consuming, re-push revocations, start the supervised background tasks."""
    try:
        await rt.verifier.load()
    except Exception as exc:
        log.warning("identity JWKS not loaded yet: %s", exc)
    # Every replica hears every tier change (a core subscription next to the shared durable
    # consumer), so its cache never serves a tier another replica has already replaced.
    async with asyncio.timeout(BROKER_START_TIMEOUT):
        await broker.start()
    # Revocations persist across restarts: re-push the stored set before serving.
    count = await rt.gate.pusher.push_now()
    log.info("revocation set re-pushed (%d entries)", count)

    async def housekeeping() -> None:
        while True:
            await rt.gate.clock.sleep(3600)
            await rt.db.prune(int(rt.gate.clock.now().timestamp()))

    rt.probes = _probes(rt, broker)
    await rt.probes.tick()
    sup = rt.supervisor
    sup.start("readiness", rt.probes.run)
    sup.start("group-commit", rt.gate.committer.run)
    sup.start("revocation-push", rt.gate.pusher.run)
    sup.start("housekeeping", housekeeping)


def _document_publishers(broker: NatsBroker) -> None:
    """What tier-gate publishes with raw nats-py, declared for the AsyncAPI document only."""
    broker.publisher(
        f"$KV.{subjects.USER_TIERS_BUCKET}.>",
        title="user-tiers:announce",
        description="Each user's current TierChanged in the KV bucket the hub reads.",
        schema=TierChanged,
    )
    broker.publisher(
        "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
        title="account-claims:push",
        description="The MD account JWT re-signed with the revocation set (system account).",
        schema=str,
    )
    broker.publisher(
        subjects.BILLING_TIER_CHANGED,
        title="billing.tier.changed:dev",
        description="Dev only: POST /dev/identity records a tier as billing would.",
        schema=TierChanged,
    )
    broker.publisher(
        subjects.dead_letter(handlers.SERVICE, subjects.BILLING_TIER_CHANGED),
        title="dead-letters",
        description="Billing events tier-gate can never apply (the kit's ack policy).",
        schema=bytes,
    )


def _starting() -> Readiness:
    return Readiness.of({"startup": Check(ok=False, reason="starting")})


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """The tier-gate ASGI app; connects in its lifespan. `app.state.broker` is the
    faststream broker (component tests wrap it in `TestNatsBroker`)."""
    settings = settings or Settings()
    deps = deps or Deps()
    metrics = Metrics()
    runtime: list[Runtime] = []

    broker = make_broker(settings, "tier-gate/control")
    broker.include_router(
        handlers.billing_router(
            lambda: runtime[0].gate if runtime else None,
            metrics,
            metrics.registry,
            durable=settings.billing_durable,
        )
    )
    _document_publishers(broker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await build_runtime(settings, deps, metrics, broker)
        runtime.append(rt)
        app.state.runtime = rt
        try:
            await start_runtime(rt, broker)
            # Long-lived objects (keys, policy, pools, modules) leave the GC's scans: shorter
            # collection pauses under load (a p99 concern, scripts/bench_tier_gate.py).
            gc.collect()
            gc.freeze()
            yield
        finally:
            await broker.stop()
            await rt.stop()
            runtime.clear()

    app = service_app(
        "tier-gate",
        lifespan=lifespan,
        readiness=lambda: runtime[0].readiness() if runtime else _starting(),
        registry=metrics.registry,
        liveness=lambda: runtime[0].supervisor.liveness() if runtime else {},
        routers=[api.router],
        broker=broker,
    )
    app.state.broker = broker
    return app
