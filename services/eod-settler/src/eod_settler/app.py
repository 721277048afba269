"""FastAPI factory: the HTTP API plus the supervised background tasks (scheduler, relay,
interest recorder). Nothing connects or reads the environment at import.

From the kit: error mapping (`install_error_handlers`), `/healthz` `/readyz` `/metrics`
(`health_router`), the supervisor, the faststream broker and its AsyncAPI document
(`/asyncapi.json`, `/docs/asyncapi`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from raxx_service_kit.http import Check, Readiness, service_app, supervisor_checks
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.supervisor import Supervisor

from eod_settler.adapters import nats as bus
from eod_settler.api import router
from eod_settler.interest import InterestRecorder
from eod_settler.metrics import Metrics
from eod_settler.runtime import SERVICE, Deps, Runtime, new_broker
from eod_settler.scheduler import Scheduler
from eod_settler.settings import Settings

log = logging.getLogger(__name__)

OpenRuntime = Callable[..., Awaitable[Runtime]]
"""`Runtime.open`'s signature: (settings, metrics, deps, messaging=..., status=...)."""


def create_app(
    settings: Settings | None = None,
    deps: Deps | None = None,
    background: bool = True,
    open_runtime: OpenRuntime | None = None,
) -> FastAPI:
    """Build the app; `background=False` serves the API only (no scheduler, relay, recorder).

    `open_runtime` replaces `Runtime.open` (component tests hand in fake adapters)."""
    settings = settings or Settings()
    metrics = Metrics()
    status = ConnectionStatus(SERVICE)
    broker, pubs = new_broker(settings, status)
    # Never give up (as before the kit): a scheduler failing while Alpaca or PostgreSQL is
    # away for an hour must run again when they return, also where no orchestrator restarts
    # the process (make run); /readyz reports it after 3 crashes in a row.
    supervisor = Supervisor(give_up_after=None, restarts=metrics.task_restarts)
    opener: OpenRuntime = open_runtime or Runtime.open

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await opener(settings, metrics, deps, messaging=(broker, pubs), status=status)
        app.state.runtime = rt
        recorder: InterestRecorder | None = None
        if background:
            js = rt.js
            recorder = InterestRecorder(
                rt.store, rt.deps.clock, ZoneInfo(settings.timezone), metrics,
                lambda asset: bus.hub_held(js, asset),
            )  # fmt: skip
            scheduler = Scheduler(
                settings, rt.settler, rt.store, rt.deps.clock, metrics, rt.corpactions
            )
            supervisor.start("relay", rt.relay.run_forever)
            supervisor.start("scheduler", scheduler.run_forever)
            every = settings.interest_flush_seconds
            supervisor.start("interest", lambda: recorder.run_forever(every))
        try:
            yield
        finally:
            await supervisor.stop()
            if recorder is not None:
                try:
                    await recorder.flush()
                except Exception:  # shutting down; the next run records them again
                    log.warning("interest flush at shutdown failed", exc_info=True)
            app.state.runtime = None
            await rt.close()

    async def readiness() -> Readiness:
        rt: Runtime | None = getattr(app.state, "runtime", None)
        if rt is None:
            return Readiness.of({"runtime": Check(ok=False, reason="starting")})
        checks = {"postgres": await _postgres_check(rt)}
        checks["nats"] = rt.nats_check()
        tasks = supervisor_checks(supervisor)
        # The scheduler waits on Alpaca (through the hub) and retries; meanwhile the settles
        # already stored are served: degraded (200, named), not unready.
        if (sched := tasks.get("task:scheduler")) is not None:
            tasks["task:scheduler"] = Check(ok=sched.ok, reason=sched.reason, critical=False)
        return Readiness.of(checks | tasks)

    app = service_app(
        "eod-settler", lifespan=lifespan, readiness=readiness, registry=metrics.registry,
        liveness=supervisor.liveness, routers=[router], broker=broker,
    )  # fmt: skip
    app.state.supervisor = supervisor  # component tests start tasks on it
    return app


async def _postgres_check(rt: Runtime) -> Check:
    """Down at once while the store knows of an outage; else a ping bounded by the store's
    operation deadline (a frozen server never answers)."""
    if rt.store.outage is not None:
        return Check(ok=False, reason=f"down: {rt.store.outage}"[:200])
    try:
        await rt.store.ping()
    except Exception as exc:
        reason = getattr(exc, "log_detail", None) or f"{type(exc).__name__}: {exc}"
        return Check(ok=False, reason=f"down: {reason}"[:200])
    return Check(ok=True)
