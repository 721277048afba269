"""One upstream connection per feed, held only while this replica leads.

Loop: connect -> authenticate -> subscribe the whole wanted set -> read frames into a queue
(never blocked by publishing) while a publisher drains it, a syncer sends subscription deltas,
a watchdog breaks silent sockets and a key watcher reconnects on rotation. After any gap the
missed minute bars are backfilled over REST and published with `backfill=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client
from raxx_contracts import AssetClass, BarKind, Channel
from websockets.exceptions import ConnectionClosed

from market_data_hub.adapters.alpaca import parse_timeframe
from market_data_hub.adapters.alpaca_stream import AlpacaStream
from market_data_hub.adapters.nats import LatestStore
from market_data_hub.adapters.vault import KeySource
from market_data_hub.aio import raise_if_cancelling
from market_data_hub.domain import Backoff, Clock, Subscriptions, plan_changes
from market_data_hub.errors import StreamError
from market_data_hub.interest import InterestStore
from market_data_hub.metrics import Metrics
from market_data_hub.normalize import bar as bar_payload
from market_data_hub.publisher import FeedPublisher, FrameQueue
from market_data_hub.rest import RestGateway
from market_data_hub.settings import Settings

log = logging.getLogger(__name__)
ALPACA_KEYS: dict[Channel, tuple[str, ...]] = {
    Channel.QUOTES: ("quotes",),
    Channel.TRADES: ("trades",),
    Channel.BARS: ("bars", "updatedBars"),
    Channel.DAILYBARS: ("dailyBars",),
    Channel.STATUSES: ("statuses",),
}


def to_alpaca(delta: dict[Channel, set[str]]) -> dict[str, list[str]]:
    """Channel deltas -> Alpaca subscribe message lists."""
    out: dict[str, list[str]] = {}
    for ch, syms in delta.items():
        for key in ALPACA_KEYS[ch]:
            out.setdefault(key, []).extend(sorted(syms))
    return out


class Session(Exception):
    """Internal: why a connected session ended (becomes the reconnect reason label)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Upstream:
    """Holds the single upstream socket of one asset class while running."""

    def __init__(
        self,
        asset: AssetClass,
        settings: Settings,
        nc: Client,
        keys: KeySource,
        interest: InterestStore,
        latest: LatestStore | None,
        rest: RestGateway | None,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.asset = asset
        self.s = settings
        self.nc = nc
        self.keys = keys
        self.interest = interest
        self.rest = rest
        self.metrics = metrics
        self.clock = clock
        self.feed = settings.feed if asset is AssetClass.STOCKS else settings.options_feed
        self.url = (
            f"{settings.alpaca_stream_url.rstrip('/')}/v2/{settings.feed}"
            if asset is AssetClass.STOCKS
            else f"{settings.alpaca_stream_url.rstrip('/')}/v1beta1/{settings.options_feed}"
        )
        self.subs = Subscriptions()
        self.authenticated = False
        self.last_failure: str | None = None
        """Why the last session ended or failed to start (for `/readyz`)."""
        self.stopped: str | None = None
        """Why this upstream stopped retrying (a 409: the feed is not in the key's plan); it
        waits for a new key version instead of reconnecting (for `/readyz`)."""
        self.server_set: dict[str, list[str]] = {}
        self.publisher = FeedPublisher(
            nc, asset, self.feed, self.subs, latest, metrics, self._on_control
        )
        self._gap_from_ns: int | None = None
        self._held_since_ns: int | None = None
        """Wall time at which symbols became held (None while nothing is wanted)."""
        self._backfills: set[asyncio.Task[None]] = set()
        self._insufficient: StreamError | None = None
        self._state("disconnected")

    def _state(self, state: str) -> None:
        self.metrics.set_upstream_state(str(self.asset), state)

    def _on_control(self, m: dict[str, Any]) -> None:
        typ = m.get("T")
        if typ == "subscription":
            self.server_set = {k: v for k, v in m.items() if k != "T" and isinstance(v, list)}
        elif typ == "error":
            code = int(m.get("code", 0))
            self.metrics.upstream_errors.labels(str(self.asset), str(code)).inc()
            log.warning("%s stream error %s: %s", self.asset, code, m.get("msg"))
            if code == 409:  # e.g. a channel or `*` outside the plan; Alpaca hangs up next
                self._insufficient = StreamError(f"stream error 409: {m.get('msg')}", 409)

    async def run(self) -> None:
        """Connect and stay connected until cancelled (leadership lost or shutdown)."""
        backoff = Backoff(self.s.backoff_initial_seconds, self.s.backoff_max_seconds)
        a = str(self.asset)
        try:
            while True:
                raise_if_cancelling()
                self._state("connecting")
                self.metrics.upstream_connects.labels(a).inc()
                started = time.monotonic()
                try:
                    reason = await self._session()
                except StreamError as exc:
                    reason = f"error_{exc.stream_code}" if exc.stream_code else "protocol"
                    self.last_failure = exc.message[:200]
                    log.warning("%s upstream: %s", a, exc.message)
                    if exc.insufficient_subscription:
                        self.metrics.upstream_reconnects.labels(a, reason).inc()
                        await self._stop_until_new_key(exc)
                        backoff.reset()
                        continue
                    if exc.slot_busy:
                        # Another socket (maybe our own stale one) holds the only slot: wait it
                        # out in a few spaced attempts instead of hammering.
                        self._mark_gap()
                        self._state("disconnected")
                        self.metrics.upstream_reconnects.labels(a, reason).inc()
                        jitter = random.uniform(0.9, 1.1)  # noqa: S311 - not crypto
                        await asyncio.sleep(self.s.slot_busy_seconds / 3 * jitter)
                        continue
                    if exc.fatal:
                        backoff.attempt = 64  # max delay; a rotated key may fix it
                except (OSError, ConnectionClosed, TimeoutError) as exc:
                    reason = type(exc).__name__
                    self.last_failure = f"{reason}: {exc}"[:200]
                    log.warning("%s upstream connection failed: %s", a, exc)
                except Session as exc:
                    reason = exc.reason
                    self.last_failure = f"session ended: {reason}"
                raise_if_cancelling()
                if (refused := self._insufficient) is not None:
                    self.metrics.upstream_reconnects.labels(a, "error_409").inc()
                    await self._stop_until_new_key(refused)
                    backoff.reset()
                    continue
                self._mark_gap()
                self.authenticated = False
                self._state("disconnected")
                self.metrics.upstream_reconnects.labels(a, reason).inc()
                if time.monotonic() - started > 30:
                    backoff.reset()
                await asyncio.sleep(backoff.next())
        finally:
            self.authenticated = False
            self._held_since_ns = None
            self._state("standby")
            for t in self._backfills:
                t.cancel()

    async def _stop_until_new_key(self, exc: StreamError) -> None:
        """A 409 (insufficient subscription): the key's plan does not include this feed, and
        reconnecting cannot change that. Stop (readiness says why) until the key is rotated."""
        self._mark_gap()
        self.authenticated = False
        self._insufficient = None
        self._state("stopped")
        key = self.keys.key
        version = key.version if key is not None else None
        self.stopped = (
            f"insufficient subscription (409): the key's plan does not include the {self.feed!r} "
            f"feed ({exc.message}); not reconnecting until the Alpaca key changes "
            "(check ALPACA_PLAN and the feed settings)"
        )
        log.error("%s upstream stopped: %s", self.asset, self.stopped)
        try:
            while True:
                await asyncio.sleep(0.5)
                key = self.keys.key
                if key is not None and key.version != version:
                    log.info("%s upstream: new Alpaca key version %s, reconnecting",
                             self.asset, key.version)  # fmt: skip
                    return
        finally:
            self.stopped = None

    def silent_for(self) -> float:
        """Seconds without upstream data while symbols are held (0 while nothing is held)."""
        if self._held_since_ns is None:
            return 0.0
        since = max(self._held_since_ns, self.publisher.last_data_ns)
        return max(0.0, (time.time_ns() - since) / 1e9)

    def _mark_gap(self) -> None:
        if self._gap_from_ns is None:
            last = self.publisher.last_data_ns or self.clock.now_ns()
            self._gap_from_ns = last

    async def _session(self) -> str:
        key = self.keys.key
        if key is None:
            raise StreamError("no Alpaca key loaded")
        stream = await AlpacaStream.open(self.url, key.key_id, key.secret_key.get_secret_value())
        self.authenticated = True
        self._state("authenticated")
        self.subs.held.clear()
        self.subs.gone_since.clear()
        queue = FrameQueue(
            self.s.reader_queue_frames, self.metrics.dropped_frames.labels(str(self.asset)).inc
        )
        tasks = [
            asyncio.create_task(self._read(stream, queue), name="reader"),
            asyncio.create_task(self.publisher.run(queue), name="publisher"),
            asyncio.create_task(self._sync(stream), name="sync"),
            asyncio.create_task(self._watchdog(), name="watchdog"),
            asyncio.create_task(self._key_watch(key.version), name="key"),
        ]
        try:
            await self._sync_once(stream)
            if self._gap_from_ns is not None:
                gap_from, self._gap_from_ns = self._gap_from_ns, None
                t = asyncio.create_task(self._backfill(gap_from))
                self._backfills.add(t)
                t.add_done_callback(self._backfills.discard)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
            return "ended"
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.close(), 2)

    async def _read(self, stream: AlpacaStream, queue: FrameQueue) -> None:
        put = queue.put
        async for frame in stream.ws:
            put(frame)
        raise Session("closed")

    async def _watchdog(self) -> None:
        limit = self.s.watchdog_seconds
        since = time.monotonic()
        while True:
            raise_if_cancelling()
            await asyncio.sleep(min(1.0, limit / 4))
            if not self.subs.held:
                since = time.monotonic()
                continue
            last = self.publisher.last_data_ns
            quiet_for = (self.clock.now_ns() - last) / 1e9 if last else time.monotonic() - since
            if quiet_for > limit and time.monotonic() - since > limit:
                log.warning("%s upstream silent for %.1f s: reconnecting", self.asset, quiet_for)
                raise Session("silent")

    async def _key_watch(self, version: int) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(0.5)
            key = self.keys.key
            if key is not None and key.version != version:
                raise Session("key_rotated")

    async def _sync(self, stream: AlpacaStream) -> None:
        while True:
            raise_if_cancelling()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.interest.changed.wait(), 0.25)
            self.interest.changed.clear()
            await self._sync_once(stream)

    async def _sync_once(self, stream: AlpacaStream) -> None:
        table, _ = await self.interest.load(self.asset)
        now = self.clock.now_ns()
        plan = plan_changes(
            self.subs, table.union(now), now, int(self.s.linger_seconds * 1e9),
            self.interest.cap(self.asset),
        )  # fmt: skip
        if plan.unsubscribe:
            await stream.send_action("unsubscribe", to_alpaca(plan.unsubscribe))
        if plan.subscribe:
            await stream.send_action("subscribe", to_alpaca(plan.subscribe))
        self.subs.apply(plan)
        held = len(self.subs.symbols())
        if not held:
            self._held_since_ns = None
        elif self._held_since_ns is None:
            self._held_since_ns = time.time_ns()
        self.metrics.symbols_subscribed.labels(str(self.asset)).set(held)

    async def _backfill(self, gap_from_ns: int) -> None:
        """Fetch the minute bars of the gap over REST; publish them with backfill=True."""
        if self.rest is None or self.asset is not AssetClass.STOCKS:
            return
        await asyncio.sleep(0.5)  # let the subscription settle first
        symbols = sorted(self.subs.held.get(Channel.BARS, set()))
        if not symbols:
            return
        start = datetime.fromtimestamp(gap_from_ns / 1e9, UTC).replace(second=0, microsecond=0)
        start -= timedelta(minutes=1)
        tf = parse_timeframe("1Min")
        # the stream's own tape (a `delayed_sip` stream: SIP as far as the plan allows)
        rest = self.rest
        feed = self.feed if self.feed in ("iex", "sip") else rest.client.history_feed(None)
        try:
            rows = await rest.call(
                "bars", ("backfill", tuple(symbols), start, feed),
                lambda c: c.bars(symbols, tf, start, None, 10_000, feed),
            )  # fmt: skip
        except Exception as exc:
            log.warning("backfill of %d symbols failed: %s", len(symbols), exc)
            return
        n = 0
        for sym, bars in rows.items():
            for b in bars:
                payload = bar_payload({**b, "S": sym}, feed, BarKind.MINUTE, backfill=True)
                await self.publisher.publish_payload(Channel.BARS, payload)
                n += 1
        self.metrics.backfill_bars.inc(n)
        log.info("backfilled %d minute bars for %d symbols", n, len(symbols))
