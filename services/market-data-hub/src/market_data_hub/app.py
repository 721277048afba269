"""Wiring: `create_app(settings, deps)` builds the FastAPI app; the lifespan runs the hub.

Every replica: NATS connection, KV/stream declarations, interest responder, leader election,
HTTP API. The leader also runs one upstream per feed, the delay line and the latest flusher.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext
from raxx_contracts import AssetClass, TierPolicy, default_policy
from raxx_contracts.alpaca_plan import AlpacaPlan, limits
from raxx_service_kit.errors import RetryableError
from raxx_service_kit.http import Check, Readiness, service_app, supervisor_checks
from raxx_service_kit.messaging import make_broker
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.nats import connect as nats_connect
from raxx_service_kit.supervisor import Supervisor

from market_data_hub.adapters import nats as nats_adapter
from market_data_hub.adapters.alpaca import AlpacaRest
from market_data_hub.adapters.market_clock import MarketClock
from market_data_hub.adapters.vault import KeySource, ServiceClients
from market_data_hub.aio import raise_if_cancelling
from market_data_hub.api import router
from market_data_hub.auth import http_tokens
from market_data_hub.delay_line import DelayLine
from market_data_hub.domain import Backoff, Clock, SystemClock
from market_data_hub.domain.ratelimit import KeyedBuckets
from market_data_hub.entitlements import TierView
from market_data_hub.errors import HubError
from market_data_hub.handlers import SERVICE, interest_router, reply_publisher
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
    market_clock: MarketClock | None = None


@dataclass(frozen=True)
class Entitlement:
    """What the Alpaca key may read, as last probed (`realtime_sip` None: not known yet)."""

    realtime_sip: bool | None = None
    detail: str = "not probed yet"
    plan: AlpacaPlan | None = None


class Hub:
    """The running service: shared state for the HTTP layer and the background tasks."""

    def __init__(
        self,
        settings: Settings,
        deps: Deps,
        metrics: Metrics,
        broker: NatsBroker,
        responder: InterestResponder,
        responder_status: ConnectionStatus,
    ) -> None:
        self.settings = settings
        self.clock = deps.clock
        self.policy = deps.policy
        self.metrics = metrics
        self.keys = deps.keys or KeySource(settings.vault)
        self.service_clients = deps.service_clients or ServiceClients(settings.vault)
        self.market_clock = deps.market_clock or MarketClock(settings.alpaca_trading_url, self.keys)
        self.passthrough: Passthrough | None = None
        self.user_rates = KeyedBuckets()  # per-user HTTP API rate ([http_rate] in the policy)
        self.delay_ns = int(settings.delay_seconds * 1e9)
        self.verifier = http_tokens(
            settings.tier_gate_jwks_url, settings.http_token_audience, settings.http_token_issuer
        )
        self.nc: Client | None = None
        self.nats_status = ConnectionStatus(f"market-data-hub-{settings.replica_id}")
        self.broker = broker
        """User-facing connection (hub-responder identity when `nats_responder_creds` is set):
        the faststream broker of the interest responder."""
        self.responder = responder
        self.responder_status = responder_status
        self.js: JetStreamContext | None = None
        self.latest: nats_adapter.LatestStore | None = None
        self.leadership: nats_adapter.Leadership | None = None
        self.upstreams: list[Upstream] = []
        self.rest: RestGateway
        self.tiers: TierView
        self.supervisor = Supervisor(
            backoff_initial=settings.backoff_initial_seconds,
            backoff_max=settings.backoff_max_seconds,
            give_up_after=settings.task_give_up_after,
            stale_after=settings.liveness_seconds / 3,
            restarts=metrics.task_restarts,
        )
        """Every background task, replica (group "replica") and leader (group "leader")."""
        self._key_version = 0
        self.plan = limits(settings.alpaca_plan)
        self.entitlement = Entitlement()
        """What the key is entitled to, as probed at start and after each key rotation."""

    async def start(self) -> None:
        """Read the key, connect, declare, answer interest, join the election."""
        s = self.settings
        key = await self.keys.load()
        self._key_version = key.version
        self.metrics.key_version.set(key.version)
        self.plan = limits(s.alpaca_plan)
        log.info(
            "ALPACA_PLAN=%s: stocks feed %s (cap %d), options feed %s (cap %d), REST %d/min%s",
            s.alpaca_plan, s.feed, s.symbol_cap, s.options_feed, s.option_symbol_cap,
            s.rest_rate_per_min,
            f"; set explicitly: {s.plan_overrides()}" if s.plan_overrides() else "",
        )  # fmt: skip
        self.rest = RestGateway(
            AlpacaRest(
                s.alpaca_data_url, key, s.feed, s.options_feed, self.plan.realtime_sip
            ),
            s, self.metrics,
        )  # fmt: skip
        await self.service_clients.refresh()
        self.passthrough = Passthrough(self)
        self.nc = await nats_connect(s, f"market-data-hub-{s.replica_id}", status=self.nats_status)
        self.js = self.nc.jetstream(timeout=5)
        self.tiers = TierView(self.js, self.policy)
        buckets = await nats_adapter.declare(self.js, s)
        self.buckets = buckets
        self.latest = nats_adapter.LatestStore(buckets.latest, s.latest_flush_seconds)
        self.interest = InterestStore(buckets.interest, s, self.clock, self.policy)
        self.responder.store = self.interest
        self.responder.publish = reply_publisher(self.broker)
        await self.interest.wait_usable()  # a request answered as soon as we subscribe works
        try:
            async with asyncio.timeout(10):  # the broker alone would retry the connect forever
                await self.broker.start()
                await self.broker.connection.flush()  # subscribed before we are called ready
        except TimeoutError:
            raise RetryableError(
                "the message bus is unavailable", 2.0, log_detail="responder connect timed out"
            ) from None
        self.metrics.symbol_cap.labels("stocks").set(s.symbol_cap)
        self.metrics.symbol_cap.labels("options").set(s.option_symbol_cap)
        assets = [AssetClass.STOCKS] + ([AssetClass.OPTIONS] if s.options_enabled else [])
        self.upstreams = [
            Upstream(a, s, self.nc, self.keys, self.interest, self.latest, self.rest,
                     self.metrics, self.clock, self.market_clock)
            for a in assets
        ]  # fmt: skip
        self.leadership = nats_adapter.Leadership(
            buckets.leader, s.replica_id, s.leader_ttl_seconds, self.metrics,
            self.nc, self.nats_status,
        )  # fmt: skip
        sup = self.supervisor
        sup.start("vault-watch", self.keys.watch)
        sup.start("service-clients-watch", self.service_clients.watch)
        sup.start("rest-rotation", self._on_rotation)
        sup.start("entitlement-probe", self._probe_entitlement)
        sup.start("market-clock", self.market_clock.run)
        sup.start("election", self.leadership.run)
        sup.start("leader-tasks", self._follow_leadership)

    async def _on_rotation(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(0.5)
            key = self.keys.key
            if key is not None and key.version != self._key_version:
                self._key_version = key.version
                self.rest.client.set_key(key)
                self.metrics.key_version.set(key.version)

    async def _probe_entitlement(self) -> None:
        """Ask Alpaca what the key may read (a recent `feed=sip` request: 403 on Basic), say it
        in the log and `/readyz`, and use it for the history feed; again after a rotation."""
        backoff = Backoff(self.settings.backoff_initial_seconds, self.settings.backoff_max_seconds)
        while True:
            raise_if_cancelling()
            key = self.keys.key
            version = key.version if key is not None else None
            try:
                sip = await self.rest.call(
                    "probe", ("sip", version), lambda c: c.probe_realtime_sip()
                )
            except HubError as exc:
                self.entitlement = Entitlement(None, f"probe failed: {exc.message}")
                log.warning("Alpaca entitlement probe failed (%s); retrying",
                            exc.detail or exc.message)  # fmt: skip
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._entitled(sip)
            while True:  # until the key changes
                await asyncio.sleep(1.0)
                key = self.keys.key
                if key is not None and key.version != version:
                    break

    def _entitled(self, sip: bool) -> None:
        plan = AlpacaPlan.ALGO_TRADER_PLUS if sip else AlpacaPlan.BASIC
        self.entitlement = Entitlement(
            sip,
            "real-time SIP and OPRA (Algo Trader Plus)" if sip
            else "IEX and indicative options only; SIP history older than 15 minutes (Basic): "
            "a recent feed=sip request answered 403",
            plan,
        )  # fmt: skip
        self.metrics.alpaca_realtime_sip.set(1 if sip else 0)
        self.rest.client.realtime_sip = sip
        configured = self.settings.alpaca_plan
        if self.plan.realtime_sip and not sip:
            log.error("the Alpaca key is entitled to %s, but ALPACA_PLAN=%s: set "
                      "ALPACA_PLAN=basic or upgrade the key's plan",
                      self.entitlement.detail, configured)  # fmt: skip
        elif sip and not self.plan.realtime_sip:
            log.warning("the Alpaca key is entitled to %s; ALPACA_PLAN=%s uses less of it",
                        self.entitlement.detail, configured)  # fmt: skip
        else:
            log.info("the Alpaca key is entitled to %s (ALPACA_PLAN=%s)",
                     self.entitlement.detail, configured)  # fmt: skip

    def alpaca_status(self) -> dict[str, Any]:
        """The plan in use and what the key is entitled to (for `/readyz`)."""
        s = self.settings
        e = self.entitlement
        return {
            "plan": str(s.alpaca_plan),
            "feeds": {"stocks": s.feed, "options": s.options_feed},
            "caps": {"stocks": s.symbol_cap, "options": s.option_symbol_cap},
            "rest_rate_per_min": s.rest_rate_per_min,
            "key_entitled_to": {
                "plan": str(e.plan) if e.plan else "unknown",
                "realtime_sip": e.realtime_sip,
                "detail": e.detail,
            },
        }

    async def _follow_leadership(self) -> None:
        """Run the leader tasks exactly while this replica leads, any number of terms."""
        if self.leadership is None:
            raise RuntimeError("start() first")
        while True:
            raise_if_cancelling()
            self.leadership.changed.clear()
            leading = self.supervisor.running("leader")
            if self.leadership.is_leader and not leading:
                self._start_leader_tasks()
            elif not self.leadership.is_leader and leading:
                log.info("stepped down: stopping the leader tasks")
                await self.supervisor.stop(group="leader")
            await self.leadership.changed.wait()

    def _start_leader_tasks(self) -> None:
        if self.nc is None or self.js is None or self.latest is None:
            raise RuntimeError("start() first")
        nc, js, latest = self.nc, self.js, self.latest

        def delay_line(asset: AssetClass) -> Callable[[], Coroutine[Any, Any, None]]:
            def run() -> Coroutine[Any, Any, None]:
                return DelayLine(
                    nc, js, self.buckets, latest, self.settings, self.metrics, self.clock, asset
                ).run()

            return run

        sup = self.supervisor
        for u in self.upstreams:
            sup.start(f"upstream-{u.asset}", u.run, group="leader")
        for asset in AssetClass:  # one per real-time capture stream
            sup.start(f"delay-line-{asset}", delay_line(asset), group="leader")
        sup.start("latest-flush", latest.run, group="leader")

    def readiness(self) -> dict[str, str]:
        """What stops this replica serving (empty when ready); no I/O, answers at once."""
        down: dict[str, str] = {}
        if problem := self.nats_status.problem(self.nc):
            down["nats"] = problem
        if problem := self.responder_status.problem(self._responder_connection()):
            down["nats_responder"] = problem
        for name, why in self.supervisor.problems().items():
            down[f"task:{name}"] = why
        if self.plan.realtime_sip and self.entitlement.realtime_sip is False:
            down["alpaca_plan"] = (
                f"ALPACA_PLAN={self.settings.alpaca_plan} but the key is entitled to "
                f"{self.entitlement.detail}"
            )
        problem = self.leadership.problem() if self.leadership is not None else "not started"
        if problem:
            down["leader_lease"] = problem
        if self.leadership is not None and self.leadership.is_leader:
            open_ = self.market_clock.is_open(self.clock.now_ns() / 1e9)
            limit = self.settings.watchdog_seconds
            for u in self.upstreams:
                if u.stopped:
                    down[f"upstream_{u.asset}"] = u.stopped
                elif not u.authenticated:
                    why = f" (last: {u.last_failure})" if u.last_failure else ""
                    down[f"upstream_{u.asset}"] = f"not authenticated{why}"
                elif open_ and (quiet := u.silent_for()) > limit:
                    down[f"upstream_{u.asset}"] = (
                        f"silent for {quiet:.0f} s during market hours (limit {limit:.0f} s)"
                    )
        return down

    def _responder_connection(self) -> Client | None:
        try:
            return self.broker.connection
        except Exception:  # not started (or stopped): faststream has no connection to give
            return None

    def ready(self) -> Readiness:
        """The kit's `/readyz` body: a check per dependency, task and upstream (failing ones
        with the reason from `readiness()`), plus the hub's own blocks `role` and `alpaca`."""
        down = self.readiness()
        names = ["nats", "nats_responder", "leader_lease", "alpaca_plan"]
        if self.leadership is not None and self.leadership.is_leader:
            names += [f"upstream_{u.asset}" for u in self.upstreams]
        checks = {n: Check(ok=True) for n in names}
        checks |= supervisor_checks(self.supervisor)
        checks |= {n: Check(ok=False, reason=why) for n, why in down.items()}
        role = "leader" if self.leadership and self.leadership.is_leader else "follower"
        return Readiness.of(checks, role=role, alpaca=self.alpaca_status())

    def liveness(self) -> dict[str, str]:
        """Why this process is wedged or useless (empty when alive); no I/O."""
        out = self.supervisor.liveness()
        if self.leadership is not None:
            idle = time.monotonic() - self.leadership.last_round
            if idle > self.settings.liveness_seconds:
                out["election"] = f"no election round finished for {idle:.0f} s"
        return out

    async def stop(self) -> None:
        """Stop leader work, resign, close NATS."""
        log.info("stopping replica %s", self.settings.replica_id)
        await self.supervisor.stop(group="leader")
        await self.supervisor.stop()
        if self.leadership is not None:
            await self.leadership.resign()
        with contextlib.suppress(Exception):
            await self.broker.stop()  # unsubscribes, drains the user-facing connection
        with contextlib.suppress(Exception):
            await self.responder.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                if self.latest is not None:
                    await asyncio.wait_for(self.latest.flush(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), 2)
            try:
                await self.nc.close()
            except Exception as exc:  # the server may be gone; nothing is left to hand over
                log.warning("closing the NATS connection failed: %s", type(exc).__name__)
        self.keys.close()
        self.service_clients.close()
        if self.passthrough is not None:
            await self.passthrough.close()
        if hasattr(self, "rest"):
            self.rest.client.close()
        log.info("stopped replica %s", self.settings.replica_id)


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> FastAPI:
    """Build the HTTP app and the control-plane broker; the hub starts in its lifespan."""
    settings = settings or Settings()
    deps = deps or Deps()
    metrics = Metrics()
    responder_status = ConnectionStatus(f"market-data-hub-{settings.replica_id}-responder")
    creds = (
        {"user_credentials": settings.nats_responder_creds} if settings.nats_responder_creds else {}
    )
    broker = make_broker(
        settings, f"market-data-hub-{settings.replica_id}-responder", status=responder_status,
        **creds,
    )  # fmt: skip
    responder = InterestResponder(metrics, settings)
    broker.include_router(interest_router(responder, metrics.registry, broker.context))

    def new_hub() -> Hub:
        return Hub(settings, deps, metrics, broker, responder, responder_status)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        h = new_hub()
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

    def readiness() -> Readiness:
        h: Hub | None = getattr(app.state, "hub", None)
        if h is None:
            return Readiness.of({"hub": Check(ok=False, reason="not started")})
        return h.ready()

    def liveness() -> dict[str, str]:
        h: Hub | None = getattr(app.state, "hub", None)
        return h.liveness() if h is not None else {}

    app = service_app(
        SERVICE, lifespan=lifespan, readiness=readiness, registry=metrics.registry,
        liveness=liveness, routers=[router, passthrough_router], broker=broker,
        on_error=lambda exc: metrics.http_requests.labels("api", str(exc.status)).inc(),
    )  # fmt: skip
    app.state.metrics = metrics
    app.state.broker = broker
    app.state.new_hub = new_hub
    return app
