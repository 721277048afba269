"""The md-replay app: the replay responder, the archive scheduler, /healthz /readyz /metrics."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from nats.aio.client import Client
from raxx_service_kit.errors import ServiceError
from raxx_service_kit.http import Check, Readiness, service_app, supervisor_checks
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.supervisor import Supervisor

from md_replay.archive import read_manifest
from md_replay.metrics import Metrics
from md_replay.replay import Replayer
from md_replay.runtime import open_runtime, schedule
from md_replay.settings import Settings


@dataclass
class Deps:
    """What tests may inject: an open NATS connection (kept open on shutdown)."""

    nc: Client | None = None


@dataclass
class State:
    """The running parts, for the routes."""

    replayer: Replayer | None = None
    status: ConnectionStatus | None = None


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts."""
    settings = settings or Settings()
    deps = deps or Deps()
    metrics = Metrics()
    state = State()
    supervisor = Supervisor(give_up_after=None, restarts=metrics.task_restarts)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, metrics, deps.nc) as rt:
            replayer = Replayer(rt.nc, rt.store, rt.reader, settings, rt.policy, metrics)
            await replayer.start()
            state.replayer, state.status = replayer, rt.status
            if settings.archive_schedule:
                supervisor.start("archive-scheduler", lambda: schedule(rt, settings))
            try:
                yield
            finally:
                await supervisor.stop()
                await replayer.stop()
                state.replayer = None

    def readiness() -> Readiness:
        r = state.replayer
        checks = supervisor_checks(supervisor)
        if r is None or state.status is None:
            checks["responder"] = Check(ok=False, reason="starting")
        else:
            checks["nats"] = state.status.check(r.nc)
        return Readiness.of(checks, replays=len(r.running) if r else 0)

    app = service_app(
        "md-replay", lifespan=lifespan, readiness=readiness, registry=metrics.registry,
        liveness=supervisor.liveness,
    )  # fmt: skip
    app.state.metrics = metrics
    app.state.md = state

    @app.get("/v1/sessions/{date}")
    async def session(date: dt.date) -> dict[str, Any]:
        """The manifest of an archived session (counts, sequence range, complete flag)."""
        r = state.replayer
        if r is None:
            raise ServiceError("not_ready", 503, "starting")
        manifest = await read_manifest(r.store, date)
        if manifest is None:
            raise ServiceError("not_archived", 404, f"{date} is not archived")
        return manifest

    return app
