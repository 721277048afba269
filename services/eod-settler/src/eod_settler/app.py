"""FastAPI factory: the HTTP API plus the supervised background tasks (scheduler, relay,
interest recorder). Nothing connects or reads the environment at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from eod_settler.adapters import nats as bus
from eod_settler.api import router
from eod_settler.errors import DatabaseUnavailableError, RetryableError, SettlerError
from eod_settler.interest import InterestRecorder
from eod_settler.metrics import Metrics
from eod_settler.runtime import Deps, Runtime
from eod_settler.scheduler import Scheduler, supervise
from eod_settler.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, deps: Deps | None = None, background: bool = True
) -> FastAPI:
    """Build the app; `background=False` serves the API only (no scheduler, relay, listener)."""
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await Runtime.open(settings, metrics, deps)
        app.state.runtime = rt
        tasks: list[asyncio.Task[None]] = []
        health: dict[str, str] = {}
        app.state.tasks = health
        if background:
            js = rt.js
            recorder = InterestRecorder(
                rt.store, rt.deps.clock, ZoneInfo(settings.timezone), metrics,
                lambda asset: bus.hub_held(js, asset),
            )  # fmt: skip
            scheduler = Scheduler(
                settings, rt.settler, rt.store, rt.deps.clock, metrics, rt.corpactions
            )
            for name, factory in (
                ("relay", rt.relay.run_forever),
                ("scheduler", scheduler.run_forever),
                ("interest", lambda: recorder.run_forever(settings.interest_flush_seconds)),
            ):
                tasks.append(asyncio.create_task(supervise(name, factory, metrics, health)))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if background:
                with contextlib.suppress(Exception):
                    await recorder.flush()
            await rt.close()

    app = FastAPI(title="eod-settler", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.settings = settings
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "message": str(exc)[:500]}, 400)

    @app.exception_handler(SettlerError)
    async def _settler_error(_r: Request, exc: SettlerError) -> JSONResponse:
        if isinstance(exc, DatabaseUnavailableError):
            log.warning("request refused, database unavailable: %s", exc)
            return JSONResponse(
                {
                    "error": "database_unavailable",
                    "message": "the settle store is unavailable; retry after Retry-After",
                },
                503,
                headers={"Retry-After": str(max(1, round(exc.retry_after or 2)))},
            )
        headers = None
        if isinstance(exc, RetryableError):
            headers = {"Retry-After": str(max(1, round(exc.retry_after or 2)))}
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, 503, headers)

    @app.exception_handler(Exception)
    async def _internal(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"error": "internal", "message": "internal error"}, 500)

    return app
