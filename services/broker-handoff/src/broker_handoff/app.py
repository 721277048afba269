"""The FastAPI app factory: routes, error mapping, health, metrics, supervised background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from raxx_contracts import TierChanged, TierPolicy, default_policy
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker_handoff.adapters.nats import RetryLater
from broker_handoff.api import router
from broker_handoff.deps import Deps, build_deps
from broker_handoff.errors import ConfigError, HandoffError
from broker_handoff.reconcile import Reconciler
from broker_handoff.revocation import MassRevocation
from broker_handoff.service import HandoffService
from broker_handoff.settings import Settings

log = logging.getLogger(__name__)
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0


async def supervise(name: str, run: Callable[[], Awaitable[None]], service: HandoffService) -> None:
    """Run a background task forever: log and restart it (backing off) whenever it fails."""
    delay = RESTART_DELAY_SECONDS
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            log.error("background task %s failed (%s); restarting", name, type(exc).__name__)
            service.metrics.background_restarts.labels(name).inc()
        if asyncio.get_running_loop().time() - started > MAX_RESTART_DELAY_SECONDS:
            delay = RESTART_DELAY_SECONDS  # it ran well for a while: start backing off afresh
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


READY_CHECK_SECONDS = 1.0


async def _check(probe: Awaitable[bool]) -> bool:
    """One readiness probe, bounded: a frozen dependency answers 'down' within a second."""
    try:
        return await asyncio.wait_for(probe, timeout=READY_CHECK_SECONDS)
    except TimeoutError:
        return False


def create_app(
    settings: Settings | None = None,
    deps: Deps | None = None,
    policy: TierPolicy | None = None,
    *,
    consume_tiers: bool = True,
) -> FastAPI:
    """Build the broker-handoff app; nothing connects until its lifespan starts."""
    settings = settings or Settings()
    if settings.redirect_uri not in settings.allowed_redirect_uris:
        raise ConfigError("BH_REDIRECT_URI must be in BH_ALLOWED_REDIRECT_URIS")
    deps = deps or build_deps(settings)
    service = HandoffService(settings, deps, policy or default_policy())
    reconciler = Reconciler(
        service, settings.reconcile_interval_seconds, settings.reconcile_grace_seconds
    )
    service.wake_reconciler = reconciler.wake

    async def on_tier(event: TierChanged) -> None:
        try:
            await service.apply_tier_change(event)
        except HandoffError as exc:
            if exc.status == 503:
                raise RetryLater(exc.code) from None
            raise

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await deps.store.open()
        await deps.bus.connect()
        await service.load_secrets()
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(supervise("reconciler", reconciler.run_forever, service))
        ]
        if consume_tiers:
            consumer = lambda: deps.bus.consume_tiers(settings.tier_consumer_durable, on_tier)  # noqa: E731
            tasks.append(asyncio.create_task(supervise("tier_consumer", consumer, service)))
        app.state.tasks = tasks
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            await deps.bus.close()
            await deps.store.close()

    app = FastAPI(title="broker-handoff", lifespan=lifespan)
    app.state.service = service
    app.state.revocation = MassRevocation(service)
    app.state.reconciler = reconciler
    app.state.settings = settings
    app.include_router(router)

    @app.exception_handler(HandoffError)
    async def handoff_error(_request: Request, exc: HandoffError) -> JSONResponse:
        retry_after = settings.retry_after_seconds if exc.retry_after else None
        return _error(exc.status, exc.code, exc.message, retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: "No such endpoint.", 405: "Method not allowed here."}.get(
            exc.status_code, "The request was refused."
        )
        return _error(exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        return _error(400, "bad_request", f"Invalid request ({fields}).")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", type(exc).__name__)
        return _error(500, "internal", "Internal error.")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        database, vault = await asyncio.gather(_check(deps.store.ping()), _check(deps.vault.ping()))
        checks = {
            "database": database,
            "vault": vault,
            "nats": deps.bus.connected,
            "tier_consumer": deps.bus.consuming or not consume_tiers,
        }
        down = [name for name, ok in checks.items() if not ok]
        if down:
            return JSONResponse({"status": "unavailable", "down": down}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        body = generate_latest(deps.metrics.registry)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app
