"""Shared pieces of the eod-settler integration tests (no tests here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import nats
from eod_settler.metrics import Metrics
from eod_settler.runtime import Deps, Runtime
from eod_settler.settings import Settings
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError
from pydantic import SecretStr
from raxx_contracts import Settle, SettleBatchDone, decode, subjects
from raxx_service_kit.clock import ManualClock

NOW = dt.datetime(2026, 1, 6, 12, 0, tzinfo=dt.UTC)
"""Pinned 'now' for the settler: every test date is in the past relative to it."""


def make_settings(nats_url: str, dsn: str, sim_url: str, **kw: Any) -> Settings:
    """Settings for a settler against the given real servers."""
    base: dict[str, Any] = {
        "env": "dev",
        "nats_url": nats_url,
        "database_url": dsn,
        "alpaca_data_url": sim_url,
        "alpaca_trading_url": sim_url,
        "alpaca_key_id": SecretStr("sim-key"),
        "alpaca_secret_key": SecretStr("sim-secret"),
        "rest_rate_per_min": 600.0,
        "settle_lag_seconds": 900.0,
    }
    base.update(kw)
    return Settings(**base)


@dataclass
class Seen:
    """What a durable consumer processed (acked)."""

    settles: list[Settle] = field(default_factory=list)
    done: list[SettleBatchDone] = field(default_factory=list)

    def keys(self) -> list[tuple[str, str, int]]:
        """(date, symbol, revision) of every processed settle, in order."""
        return [(s.date.isoformat(), s.symbol, s.revision) for s in self.settles]


class Consumer:
    """A durable pull consumer, as MBT would run it: explicit acks, redelivery after ack_wait."""

    def __init__(self, url: str, durable: str = "mbt", ack_wait: float = 2.0) -> None:
        self.url = url
        self.durable = durable
        self.ack_wait = ack_wait
        self.seen = Seen()

    async def ensure(self) -> None:
        """Create the durable consumer on SETTLES (before or after settles exist)."""
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            await js.add_consumer(
                subjects.SETTLES_STREAM,
                ConsumerConfig(
                    durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait, max_deliver=20, deliver_policy=DeliverPolicy.ALL,
                    filter_subject=subjects.SETTLES_ANY,
                ),
            )  # fmt: skip
        finally:
            await nc.close()

    async def consume(
        self, max_msgs: int | None = None, idle: float = 1.0, ack_only: int | None = None
    ) -> int:
        """Fetch until idle (or `max_msgs` fetched); ack (and record) at most `ack_only`.

        Messages fetched but not acked are abandoned, as by a consumer that crashed mid-batch.
        """
        nc = await nats.connect(self.url)
        fetched = acked = 0
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe_bind(self.durable, stream=subjects.SETTLES_STREAM)
            while max_msgs is None or fetched < max_msgs:
                want = 50 if max_msgs is None else min(50, max_msgs - fetched)
                try:
                    msgs = await sub.fetch(want, timeout=idle)
                except (FetchTimeoutError, TimeoutError):
                    break
                for m in msgs:
                    fetched += 1
                    if ack_only is not None and acked >= ack_only:
                        continue  # crash: never acked, never processed
                    if m.subject.startswith("md.settle.done."):
                        self.seen.done.append(decode(SettleBatchDone, m.data))
                    else:
                        self.seen.settles.append(decode(Settle, m.data))
                    await m.ack_sync()
                    acked += 1
        finally:
            await nc.close()
        return fetched


async def open_runtime(settings: Settings, now: dt.datetime = NOW) -> Runtime:
    """A settler runtime with a pinned clock."""
    return await Runtime.open(settings, Metrics(), Deps(clock=ManualClock(now)))


async def stream_count(url: str) -> int:
    """Messages in stream SETTLES."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(subjects.SETTLES_STREAM)
        return int(info.state.messages)
    finally:
        await nc.close()
