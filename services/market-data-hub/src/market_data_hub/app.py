"""Wiring: `create_app(settings, deps)` builds the FastAPI app; the lifespan runs the hub.

Every replica: NATS connection, KV/stream declarations, interest responder, leader election,
HTTP API. The leader also runs one upstream per feed, the delay line and the latest flusher.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import generate_latest
from raxx_contracts import AssetClass, TierPolicy, default_policy

from market_data_hub.adapters import nats as nats_adapter
from market_data_hub.adapters.alpaca import AlpacaRest
from market_data_hub.adapters.vault import KeySource, ServiceClients
from market_data_hub.aio import raise_if_cancelling
from market_data_hub.api import router
from market_data_hub.auth import JwksVerifier
from market_data_hub.delay_line import DelayLine
from market_data_hub.domain import Clock, SystemClock
from market_data_hub.domain.ratelimit import KeyedBuckets
from market_data_hub.errors import HubError
from market_data_hub.interest import InterestResponder, InterestStore
from market_data_hub.metrics import Metrics
from market_data_hub.passthrough import Passthrough
from market_data_hub.passthrough import router as passthrough_router
from market_data_hub.rest import RestGateway
from market_data_hub.settings import Settings
from market_data_hub.upstream import Upstream

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """Collaborators a test may replace."""

    clock: Clock = field(default_factory=SystemClock)
    policy: TierPolicy = field(default_factory=default_policy)
    keys: KeySource | None = None
    service_clients: ServiceClients | None = None


class Hub:
    """The running service: shared state for the HTTP layer and the background tasks."""

    def __init__(self, settings: Settings, deps: Deps, metrics: Metrics) -> None:
        self.settings = settings
        self.clock = deps.clock
        self.policy = deps.policy
        self.metrics = metrics
        self.keys = deps.keys or KeySource(settings.vault)
        self.service_clients = deps.service_clients or ServiceClients(settings.vault)
        self.passthrough: Passthrough | None = None
        self.user_rates = KeyedBuckets()  # per-user HTTP API rate ([http_rate] in the policy)
        self.delay_ns = int(settings.delay_seconds * 1e9)
        self.verifier = JwksVerifier(
            settings.tier_gate_jwks_url, settings.http_token_audience, settings.http_token_issuer
        )
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.latest: nats_adapter.LatestStore | None = None
        self.leadership: nats_adapter.Leadership | None = None
        self.upstreams: list[Upstream] = []
        self.rest: RestGateway
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._coros: list[object] = []
        """Coroutines handed to tasks; closed on stop (a task cancelled before its first step
        never starts its coroutine, which Python then reports as never awaited)."""

    async def start(self) -> None:
        """Read the key, connect, declare, answer interest, join the election."""
        s = self.settings
        key = await self.keys.load()
        self.metrics.key_version.set(key.version)
        self.rest = RestGateway(
            AlpacaRest(s.alpaca_data_url, key, s.feed, s.options_feed), s, self.metrics
        )
        await self.service_clients.refresh()
        self.passthrough = Passthrough(self)
        self.nc = await nats_adapter.connect(s, f"market-data-hub-{s.replica_id}")
        self.js = self.nc.jetstream(timeout=5)
        buckets = await nats_adapter.declare(self.js, s)
        self.buckets = buckets
        self.latest = nats_adapter.LatestStore(buckets.latest, s.latest_flush_seconds)
        self.interest = InterestStore(buckets.interest, s, self.clock)
        self.responder = InterestResponder(self.nc, self.interest, self.metrics)
        await self.interest.wait_usable()  # a request answered as soon as we subscribe works
        await self.responder.start()
        self.metrics.symbol_cap.labels("stocks").set(s.symbol_cap)
        self.metrics.symbol_cap.labels("options").set(s.option_symbol_cap)
        assets = [AssetClass.STOCKS] + ([AssetClass.OPTIONS] if s.options_enabled else [])
        self.upstreams = [
            Upstream(a, s, self.nc, self.keys, self.interest, self.latest, self.rest,
                     self.metrics, self.clock)
            for a in assets
        ]  # fmt: skip
        self.leadership = nats_adapter.Leadership(
            buckets.leader, s.replica_id, s.leader_ttl_seconds, self.metrics
        )
        self._spawn(self.keys.watch(), "vault-watch")
        self._spawn(self.service_clients.watch(), "service-clients-watch")
        self._spawn(self._on_rotation(key.version), "rest-rotation")
        self._spawn(self.leadership.run(), "election")
        self._spawn(self._follow_leadership(), "leader-tasks")

    def _spawn(self, coro: object, name: str) -> None:
        async def supervised() -> None:
            while True:
                raise_if_cancelling()
                try:
                    await coro  # type: ignore[misc]
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background task %s crashed; the hub is not ready", name)
                    self.crashed = name
                    return

        self._tasks.append(asyncio.create_task(supervised(), name=name))
        self._coros.append(coro)

    crashed: str | None = None

    async def _on_rotation(self, version: int) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(0.5)
            key = self.keys.key
            if key is not None and key.version != version:
                version = key.version
                self.rest.client.set_key(key)
                self.metrics.key_version.set(version)

    async def _follow_leadership(self) -> None:
        if self.leadership is None:
            raise RuntimeError("start() first")
        while True:
            raise_if_cancelling()
            await self.leadership.changed.wait()
            self.leadership.changed.clear()
            if self.leadership.is_leader and not self._leader_tasks:
                self._start_leader_tasks()
            elif not self.leadership.is_leader and self._leader_tasks:
                await self._stop_leader_tasks()

    def _start_leader_tasks(self) -> None:
        if self.nc is None or self.js is None or self.latest is None:
            raise RuntimeError("start() first")
        delay = DelayLine(self.nc, self.js, self.buckets, self.latest, self.settings,
                          self.metrics, self.clock)  # fmt: skip
        coros = [u.run() for u in self.upstreams] + [delay.run(), self.latest.run()]
        self._leader_tasks = [asyncio.create_task(self._leader_guard(c)) for c in coros]
        self._coros.extend(coros)

    async def _leader_guard(self, coro: object) -> None:
        while True:
            raise_if_cancelling()
            try:
                await coro  # type: ignore[misc]
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader task crashed; restarting it in 1 s")
                await asyncio.sleep(1)
                return

    async def _stop_leader_tasks(self) -> None:
        for t in self._leader_tasks:
            t.cancel()
        await asyncio.gather(*self._leader_tasks, return_exceptions=True)
        self._leader_tasks = []
        self._close_coros()

    def _close_coros(self) -> None:
        for c in self._coros:
            close = getattr(c, "close", None)
            if close is not None:
                close()  # no-op once finished; silences a coroutine that never started
        self._coros = []

    def readiness(self) -> dict[str, str]:
        """What is down (empty when ready)."""
        down: dict[str, str] = {}
        if self.nc is None or not self.nc.is_connected:
            down["nats"] = "not connected"
        if self.crashed:
            down["task"] = f"{self.crashed} crashed"
        problem = self.leadership.problem() if self.leadership is not None else "not started"
        if problem:
            down["leader_lease"] = problem
        if self.leadership is not None and self.leadership.is_leader:
            for u in self.upstreams:
                if not u.authenticated:
                    down[f"upstream_{u.asset}"] = "not authenticated"
        return down

    async def stop(self) -> None:
        """Stop leader work, resign, close NATS."""
        log.info("stopping replica %s", self.settings.replica_id)
        await self._stop_leader_tasks()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_coros()
        if self.leadership is not None:
            await self.leadership.resign()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.responder.stop()
                if self.latest is not None:
                    await asyncio.wait_for(self.latest.flush(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), 2)
            await self.nc.close()
        self.keys.close()
        self.service_clients.close()
        if self.passthrough is not None:
            await self.passthrough.close()
        if hasattr(self, "rest"):
            self.rest.client.close()
        log.info("stopped replica %s", self.settings.replica_id)


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """Build the HTTP app; the hub starts in its lifespan."""
    settings = settings or Settings()
    deps = deps or Deps()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        h = Hub(settings, deps, metrics)
        app.state.hub = h
        await h.start()
        # Start-up objects (FastAPI, pydantic, nats-py) never die: move them out of the GC's
        # generations so full collections under load scan only what the hot path allocates.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await h.stop()

    app = FastAPI(title="market-data-hub", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(passthrough_router)

    @app.exception_handler(HubError)
    async def hub_error(req: Request, exc: HubError) -> JSONResponse:
        metrics.http_requests.labels("api", str(exc.status)).inc()
        if exc.detail:  # never in the reply: upstream text and internal addresses stay here
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            log.log(level, "%s %s -> %s: %s", req.method, req.url.path, exc.code, exc.detail)
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(
            {"error": "invalid_request", "message": "; ".join(parts)}, status_code=422
        )

    @app.exception_handler(Exception)
    async def internal(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal error"}, status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        h: Hub = request.app.state.hub
        down = h.readiness()
        role = "leader" if h.leadership and h.leadership.is_leader else "follower"
        if down:
            return JSONResponse({"status": "unavailable", "role": role, "down": down}, 503)
        return JSONResponse({"status": "ready", "role": role})

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return PlainTextResponse(
            generate_latest(metrics.registry), media_type="text/plain; version=0.0.4"
        )

    return app
