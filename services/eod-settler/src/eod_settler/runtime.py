"""Wiring shared by the service and the CLI: Postgres, NATS (the kit's faststream broker),
the streams, relay and settler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext
from raxx_service_kit.clock import Clock, SystemClock
from raxx_service_kit.http import Check
from raxx_service_kit.messaging import make_broker
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.postgres import DbTimeouts

from eod_settler.adapters import nats as bus
from eod_settler.adapters.alpaca import AlpacaCredentials
from eod_settler.adapters.postgres import Store
from eod_settler.adapters.vault import CredentialSource
from eod_settler.corpactions import CorpActionsRun
from eod_settler.errors import RetryableError
from eod_settler.metrics import Metrics
from eod_settler.relay import OutboxRelay
from eod_settler.service import Settler
from eod_settler.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE = "eod-settler"


@dataclass
class Deps:
    """Collaborators a test may replace (time, the source of the Alpaca key)."""

    clock: Clock = field(default_factory=SystemClock)
    credentials: Callable[[], Awaitable[AlpacaCredentials]] | None = None


def new_broker(
    settings: Settings, status: ConnectionStatus | None = None
) -> tuple[NatsBroker, bus.Publishers]:
    """The kit's control-plane broker with the settler's publishers registered (not connected)."""
    broker = make_broker(settings, SERVICE, status=status)
    return broker, bus.publishers(broker, settings.publish_timeout_seconds)


@dataclass
class Runtime:
    """Open connections and the objects built on them."""

    settings: Settings
    metrics: Metrics
    deps: Deps
    store: Store
    broker: NatsBroker
    status: ConnectionStatus
    nc: Client
    js: JetStreamContext
    relay: OutboxRelay
    settler: Settler
    corpactions: CorpActionsRun

    @classmethod
    async def open(
        cls,
        settings: Settings,
        metrics: Metrics,
        deps: Deps | None = None,
        attempts: int = 10,
        messaging: tuple[NatsBroker, bus.Publishers] | None = None,
        status: ConnectionStatus | None = None,
    ) -> Runtime:
        """Connect (retrying while dependencies come up), migrate, declare SETTLES and
        CORPACTIONS, connect the broker (its publishers are the relay's)."""
        deps = deps or Deps()
        status = status or ConnectionStatus(SERVICE)
        broker, pubs = messaging or new_broker(settings, status)
        store = await _retry(
            lambda: Store.open(
                settings.database_url,
                timeouts=DbTimeouts(
                    pool=settings.db_pool_timeout,
                    operation=settings.db_operation_timeout,
                    statement=settings.db_statement_timeout,
                ),
            ),
            "postgres",
            attempts,
        )
        try:
            await store.migrate()
            nc = await _retry(lambda: _start(broker), "nats", attempts)
        except BaseException:
            await store.close()
            raise
        js = nc.jetstream(timeout=settings.publish_timeout_seconds)
        for config in (
            bus.settles_stream_config(settings.stream_max_age_days, settings.dedup_window_seconds),
            bus.corpactions_stream_config(
                settings.stream_max_age_days, settings.dedup_window_seconds
            ),
        ):
            await bus.ensure_stream(js, config)
        relay = OutboxRelay(
            store, pubs, metrics, settings.publish_batch, settings.publish_timeout_seconds
        )
        settler = Settler(
            settings, store, relay, metrics, deps.clock,
            deps.credentials or CredentialSource(settings), lambda: bus.held_options(js),
        )  # fmt: skip
        last = await store.last_complete_close()
        if last is not None:
            settler.last_success_close = last.timestamp()
            metrics.last_success.set(settler.last_success_close)
        metrics.outbox_depth.set(await store.outbox_depth())
        return cls(
            settings, metrics, deps, store, broker, status, nc, js, relay, settler,
            CorpActionsRun(settler),
        )  # fmt: skip

    def nats_check(self) -> Check:
        """Readiness of the broker's connection (why it is down, when it is)."""
        return self.status.check(self.nc)

    async def close(self) -> None:
        """Stop the broker (draining its connection) and close the pool."""
        try:
            await self.broker.stop()
        except Exception:  # closing anyway
            log.debug("broker stop failed", exc_info=True)
        await self.store.close()


async def _start(broker: NatsBroker, timeout: float = 10.0) -> Client:  # noqa: ASYNC109
    """Start the broker within `timeout` (its first connect would retry forever)."""
    try:
        async with asyncio.timeout(timeout):
            await broker.start()
    except Exception as exc:
        await broker.stop()
        raise RetryableError(
            "the message bus is unavailable", 2.0, code="nats_unavailable",
            log_detail=f"{type(exc).__name__}: {exc}"[:300],
        ) from exc  # fmt: skip
    nc: Client = broker.connection
    return nc


async def _retry(fn: Callable[[], Awaitable[T]], what: str, attempts: int) -> T:
    delay = 0.5
    for i in range(attempts):
        try:
            return await fn()
        except RetryableError as exc:
            if i == attempts - 1:
                raise
            log.warning("%s not ready (%s); retrying in %.1f s", what, exc.log_detail or exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")
