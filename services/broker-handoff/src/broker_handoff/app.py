"""The FastAPI app factory: routes, the kit's error mapping and health router, the kit broker
(tier consumer, handoff events) and the kit supervisor for background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.nats import NatsBroker
from raxx_contracts import TierPolicy, default_policy
from raxx_service_kit.errors import ConfigError, RetryableError
from raxx_service_kit.http import Readiness, ping_checks, service_app, supervisor_checks
from raxx_service_kit.messaging import make_broker
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.supervisor import Supervisor

from broker_handoff.api import router
from broker_handoff.deps import Deps, build_deps
from broker_handoff.handlers import SERVICE, build_router
from broker_handoff.reconcile import Reconciler
from broker_handoff.revocation import MassRevocation
from broker_handoff.service import HandoffService
from broker_handoff.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    deps: Deps | None = None,
    policy: TierPolicy | None = None,
    *,
    broker: NatsBroker | None = None,
) -> FastAPI:
    """Build the broker-handoff app; nothing connects until its lifespan starts.

    `broker` defaults to the kit's `make_broker(settings, "broker-handoff")`; component tests
    wrap it (`app.state.broker`) in faststream's `TestNatsBroker`.
    """
    settings = settings or Settings()
    if settings.redirect_uri not in settings.allowed_redirect_uris:
        raise ConfigError("BH_REDIRECT_URI must be in BH_ALLOWED_REDIRECT_URIS")
    deps = deps or build_deps(settings)
    service = HandoffService(settings, deps, policy or default_policy())
    reconciler = Reconciler(
        service, settings.reconcile_interval_seconds, settings.reconcile_grace_seconds
    )
    service.wake_reconciler = reconciler.wake
    supervisor = Supervisor(clock=deps.clock, restarts=deps.metrics.task_restarts)
    nats_status = ConnectionStatus(SERVICE)
    broker = broker or make_broker(settings, SERVICE, status=nats_status)
    nats_router, publish = build_router(
        deps.metrics.registry, settings.tier_consumer_durable, service.apply_tier_change
    )
    broker.include_router(nats_router)
    service.publish_event = publish

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await deps.store.open()
        try:
            try:
                # make_broker's connection retries forever: start-up is bounded here instead.
                async with asyncio.timeout(settings.nats_start_timeout_seconds):
                    await broker.start()
            except TimeoutError:
                raise RetryableError(
                    "the message bus is unavailable", code="nats_unavailable"
                ) from None
            await service.load_secrets()
            supervisor.start("reconciler", reconciler.run_forever)
            yield
        finally:
            await supervisor.stop()
            await broker.stop()
            await deps.store.close()

    async def readiness() -> Readiness:
        checks = supervisor_checks(supervisor)
        checks |= await ping_checks(
            {
                "database": deps.store.ping,
                "vault": deps.vault.ping,
                "nats": lambda: broker.ping(timeout=1.0),
            }
        )
        return Readiness.of(checks)

    app = service_app(
        "broker-handoff",
        lifespan=lifespan,
        readiness=readiness,
        registry=deps.metrics.registry,
        liveness=supervisor.liveness,
        retry_after=settings.retry_after_seconds,
        routers=[router],
        broker=broker,
    )
    app.state.service = service
    app.state.revocation = MassRevocation(service)
    app.state.reconciler = reconciler
    app.state.supervisor = supervisor
    app.state.broker = broker
    app.state.settings = settings
    return app
