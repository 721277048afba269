"""The md-replay app: the replay responder, the archive scheduler, /healthz /readyz /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from md_replay.archive import read_manifest
from md_replay.metrics import Metrics
from md_replay.replay import Replayer
from md_replay.runtime import open_runtime, schedule, supervise
from md_replay.settings import Settings


@dataclass
class Deps:
    """What tests may inject: an open NATS connection (kept open on shutdown)."""

    nc: Client | None = None


@dataclass
class State:
    """The running parts, for the routes."""

    replayer: Replayer | None = None
    tasks: tuple[asyncio.Task[None], ...] = ()


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts."""
    settings = settings or Settings()
    deps = deps or Deps()
    metrics = Metrics()
    state = State()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, metrics, deps.nc) as rt:
            replayer = Replayer(rt.nc, rt.store, rt.reader, settings, rt.policy, metrics)
            await replayer.start()
            state.replayer = replayer
            if settings.archive_schedule:

                async def run_schedule() -> None:
                    await schedule(rt, settings)

                state.tasks = (asyncio.create_task(supervise("archive scheduler", run_schedule)),)
            try:
                yield
            finally:
                for task in state.tasks:
                    task.cancel()
                await asyncio.gather(*state.tasks, return_exceptions=True)
                await replayer.stop()
                state.replayer = None

    app = FastAPI(title="md-replay", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.md = state

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, Any]:
        r = state.replayer
        ready = r is not None and r.nc.is_connected
        response.status_code = 200 if ready else 503
        return {"ready": ready, "replays": len(r.running) if r else 0}

    @app.get("/metrics")
    async def prom() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/sessions/{date}")
    async def session(date: dt.date) -> dict[str, Any]:
        """The manifest of an archived session (counts, sequence range, complete flag)."""
        r = state.replayer
        if r is None:
            raise HTTPException(503, "not ready")
        manifest = await read_manifest(r.store, date)
        if manifest is None:
            raise HTTPException(404, f"{date} is not archived")
        return manifest

    return app
