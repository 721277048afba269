"""Wiring shared by the service and the CLI: Postgres, NATS, stream, relay and settler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext

from eod_settler.adapters import nats as bus
from eod_settler.adapters.alpaca import AlpacaCredentials
from eod_settler.adapters.postgres import Store
from eod_settler.adapters.vault import load_credentials
from eod_settler.clock import Clock, SystemClock
from eod_settler.corpactions import CorpActionsRun
from eod_settler.errors import RetryableError
from eod_settler.metrics import Metrics
from eod_settler.relay import OutboxRelay
from eod_settler.service import Settler
from eod_settler.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Deps:
    """Collaborators a test may replace (time, the source of the Alpaca key)."""

    clock: Clock = field(default_factory=SystemClock)
    credentials: Callable[[], Awaitable[AlpacaCredentials]] | None = None


@dataclass
class Runtime:
    """Open connections and the objects built on them."""

    settings: Settings
    metrics: Metrics
    deps: Deps
    store: Store
    nc: Client
    js: JetStreamContext
    relay: OutboxRelay
    settler: Settler
    corpactions: CorpActionsRun

    @classmethod
    async def open(
        cls, settings: Settings, metrics: Metrics, deps: Deps | None = None, attempts: int = 10
    ) -> Runtime:
        """Connect (retrying while dependencies come up), migrate, declare SETTLES and
        CORPACTIONS."""
        deps = deps or Deps()
        store = await _retry(
            lambda: Store.open(
                settings.database_url,
                pool_timeout=settings.db_pool_timeout,
                operation_timeout=settings.db_operation_timeout,
                statement_timeout=settings.db_statement_timeout,
            ),
            "postgres",
            attempts,
        )
        try:
            await store.migrate()
            nc = await _retry(
                lambda: bus.connect(settings.nats_url, settings.nats_creds), "nats", attempts
            )
        except BaseException:
            await store.close()
            raise
        js = nc.jetstream(timeout=settings.publish_timeout_seconds)
        await bus.ensure_stream(
            js,
            bus.settles_stream_config(settings.stream_max_age_days, settings.dedup_window_seconds),
        )
        await bus.ensure_stream(
            js,
            bus.corpactions_stream_config(
                settings.stream_max_age_days, settings.dedup_window_seconds
            ),
        )
        relay = OutboxRelay(
            store, js, metrics, settings.publish_batch, settings.publish_timeout_seconds
        )

        async def creds() -> AlpacaCredentials:
            return await load_credentials(settings)

        settler = Settler(
            settings, store, relay, metrics, deps.clock, deps.credentials or creds,
            lambda: bus.held_options(js),
        )  # fmt: skip
        last = await store.last_complete_close()
        if last is not None:
            settler.last_success_close = last.timestamp()
            metrics.last_success.set(settler.last_success_close)
        metrics.outbox_depth.set(await store.outbox_depth())
        return cls(settings, metrics, deps, store, nc, js, relay, settler, CorpActionsRun(settler))

    async def close(self) -> None:
        """Close NATS (flushing) and the pool."""
        try:
            await self.nc.drain()
        except Exception:  # closing anyway
            log.debug("nats drain failed", exc_info=True)
        await self.store.close()


async def _retry(fn: Callable[[], Awaitable[T]], what: str, attempts: int) -> T:
    delay = 0.5
    for i in range(attempts):
        try:
            return await fn()
        except RetryableError as exc:
            if i == attempts - 1:
                raise
            log.warning("%s not ready (%s); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")
