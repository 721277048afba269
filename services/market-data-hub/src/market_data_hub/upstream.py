"""One upstream connection per feed, held only while this replica leads.

Loop: connect -> authenticate -> subscribe the whole wanted set -> read frames into a queue
(never blocked by publishing) while a publisher drains it, a syncer sends subscription deltas,
a watchdog breaks silent sockets and a key watcher reconnects on rotation. After any gap the
missed minute bars are backfilled over REST and published with `backfill=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from nats.aio.client import Client
from raxx_contracts import TRADE_COMPANIONS, AssetClass, BarKind, Channel
from websockets.exceptions import ConnectionClosed

from market_data_hub.adapters.alpaca import AlpacaRest
from market_data_hub.adapters.alpaca_stream import CHUNK, AlpacaStream
from market_data_hub.adapters.market_clock import MarketClock
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
    Channel.LULDS: ("lulds",),
    Channel.IMBALANCES: ("imbalances",),
}
KEY_CHANNEL = {key: ch for ch, keys in ALPACA_KEYS.items() for key in keys}
SUBSCRIBE_ANSWER_CODES = frozenset((400, 405, 410, 413))
"""Error codes Alpaca sends instead of the `subscription` answer to one (un)subscribe."""


def to_alpaca(delta: dict[Channel, set[str]]) -> dict[str, list[str]]:
    """Channel deltas -> Alpaca subscribe message lists."""
    out: dict[str, list[str]] = {}
    for ch, syms in delta.items():
        for key in ALPACA_KEYS[ch]:
            out.setdefault(key, []).extend(sorted(syms))
    return out


def upstream_channels(wanted: dict[Channel, set[str]]) -> dict[Channel, set[str]]:
    """Leased channels -> channels to subscribe upstream: corrections and cancels come only
    with `trades`, so a lease on either holds `trades`."""
    out: dict[Channel, set[str]] = {}
    for ch, syms in wanted.items():
        target = Channel.TRADES if ch in TRADE_COMPANIONS else ch
        out.setdefault(target, set()).update(syms)
    return out


@dataclass(frozen=True)
class Sent:
    """One (un)subscribe message on the wire, waiting for its answer."""

    action: str
    key: str
    symbols: tuple[str, ...]


async def _bars_page(
    symbols: list[str], start: datetime, token: str | None, feed: str, client: AlpacaRest
) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    return await client.bars_page(symbols, "1Min", start, None, token, feed)


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
        market_clock: MarketClock | None = None,
    ) -> None:
        self.asset = asset
        self.market_clock = market_clock
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
        self._pending: deque[Sent] = deque()
        """(Un)subscribe messages sent and not yet answered, oldest first (Alpaca answers each
        with the full `subscription` set or an error, in order)."""
        self._resend: list[Sent] = []
        self.refused: dict[str, tuple[int, str, int]] = {}
        """Symbol -> (Alpaca code, message, until epoch ns): not asked for again before then."""
        self._state_dirty = True
        self._deferred_gap_ns: int | None = None
        """A gap found while the market was closed: backfilled once it opens."""
        self._overflow_from_ns: int | None = None
        """Frames were dropped (reader queue full) since this time: a gap to backfill."""
        self._queue: FrameQueue | None = None
        self._quiet_closed_counted = False
        self._state("disconnected")

    def _state(self, state: str) -> None:
        self.metrics.set_upstream_state(str(self.asset), state)

    def _on_control(self, m: dict[str, Any]) -> None:
        typ = m.get("T")
        if typ == "subscription":
            self.server_set = {k: v for k, v in m.items() if k != "T" and isinstance(v, list)}
            if self._pending:
                self._pending.popleft()
            self.subs.acknowledge(self.server_set)
            self._state_dirty = True
            self.interest.changed.set()  # wakes the syncer, which shares the new held set
        elif typ == "error":
            code = int(m.get("code", 0))
            self.metrics.upstream_errors.labels(str(self.asset), str(code)).inc()
            log.warning("%s stream error %s: %s", self.asset, code, m.get("msg"))
            if code == 409:  # e.g. a channel or `*` outside the plan; Alpaca hangs up next
                self._insufficient = StreamError(f"stream error 409: {m.get('msg')}", 409)
            if code in SUBSCRIBE_ANSWER_CODES and self._pending:
                sent = self._pending.popleft()
                if sent.action == "subscribe":
                    self._refused(sent, code, str(m.get("msg") or ""))

    def _refused(self, sent: Sent, code: int, msg: str) -> None:
        """Alpaca refused one subscribe message: split it until the refused symbols are known
        (a 400 names no symbol; a 405 refuses the whole message), then stop asking for them."""
        if len(sent.symbols) > 1:
            half = len(sent.symbols) // 2
            self._resend.append(Sent(sent.action, sent.key, sent.symbols[:half]))
            self._resend.append(Sent(sent.action, sent.key, sent.symbols[half:]))
        else:
            sym = sent.symbols[0]
            until = self.clock.now_ns() + int(self.s.upstream_refusal_seconds * 1e9)
            self.refused[sym] = (code, msg[:100], until)
            for ch in ALPACA_KEYS:
                self.subs.refuse(ch, {sym})
            self.metrics.upstream_refusals.labels(str(self.asset), str(code)).inc()
            log.warning("%s: Alpaca refused %s (%s %s)", self.asset, sym, code, msg)
            self._state_dirty = True
        self.interest.changed.set()

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

    def _on_overflow(self) -> None:
        """The reader queue dropped a frame: what it carried is lost, so it is a gap."""
        self.metrics.dropped_frames.labels(str(self.asset)).inc()
        if self._overflow_from_ns is None:
            self._overflow_from_ns = self.publisher.last_data_ns or self.clock.now_ns()

    def _market_open(self) -> bool | None:
        if self.market_clock is None:
            return None
        return self.market_clock.is_open(self.clock.now_ns() / 1e9)

    def _start_backfill(self, gap_from_ns: int) -> None:
        """Backfill now while the market is open (or its state is unknown); otherwise once it
        opens: no REST calls for a closed market, and nothing of the gap is forgotten."""
        if self._market_open() is False:
            prev = self._deferred_gap_ns
            self._deferred_gap_ns = gap_from_ns if prev is None else min(prev, gap_from_ns)
            self.metrics.backfill_gaps.labels("deferred_closed").inc()
            return
        t = asyncio.create_task(self._backfill(gap_from_ns))
        self._backfills.add(t)
        t.add_done_callback(self._backfills.discard)

    async def _session(self) -> str:
        key = self.keys.key
        if key is None:
            raise StreamError("no Alpaca key loaded")
        stream = await AlpacaStream.open(self.url, key.key_id, key.secret_key.get_secret_value())
        self.authenticated = True
        self._state("authenticated")
        self.subs.clear()
        self._pending.clear()
        self._resend.clear()
        self._state_dirty = True
        queue = self._queue = FrameQueue(self.s.reader_queue_frames, self._on_overflow)
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
                self._start_backfill(gap_from)
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
        """Break a socket that is silent while the market is open (not overnight, not on a
        holiday: silence is normal then); start deferred and overflow backfills."""
        limit = self.s.watchdog_seconds
        since = time.monotonic()
        while True:
            raise_if_cancelling()
            await asyncio.sleep(min(1.0, limit / 4))
            open_ = self._market_open()
            if open_ is not False and self._deferred_gap_ns is not None:
                gap, self._deferred_gap_ns = self._deferred_gap_ns, None
                self._start_backfill(gap)
            queue = self._queue
            if (
                self._overflow_from_ns is not None
                and queue is not None
                and len(queue.items) < queue.maxlen // 2
            ):
                gap, self._overflow_from_ns = self._overflow_from_ns, None
                log.warning("%s reader queue overflowed: backfilling the gap", self.asset)
                self._start_backfill(gap)
            if not self.subs.held:
                since = time.monotonic()
                continue
            last = self.publisher.last_data_ns
            quiet_for = (self.clock.now_ns() - last) / 1e9 if last else time.monotonic() - since
            if quiet_for > limit and time.monotonic() - since > limit:
                if open_ is False:
                    if not self._quiet_closed_counted:
                        self._quiet_closed_counted = True
                        self.metrics.watchdog_quiet_closed.labels(str(self.asset)).inc()
                    continue
                log.warning("%s upstream silent for %.1f s: reconnecting", self.asset, quiet_for)
                raise Session("silent")
            self._quiet_closed_counted = False

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

    async def _send(self, stream: AlpacaStream, action: str, lists: dict[str, list[str]]) -> None:
        for key, symbols in lists.items():
            syms = sorted(symbols)
            for i in range(0, len(syms), CHUNK):
                await self._send_one(stream, Sent(action, key, tuple(syms[i : i + CHUNK])))

    async def _send_one(self, stream: AlpacaStream, sent: Sent) -> None:
        self._pending.append(sent)
        await stream.ws.send(msgpack.packb({"action": sent.action, sent.key: list(sent.symbols)}))

    async def _sync_once(self, stream: AlpacaStream) -> None:
        table, _ = await self.interest.load(self.asset)
        now = self.clock.now_ns()
        if self.refused:
            expired = [s for s, (_, _, until) in self.refused.items() if until <= now]
            for sym in expired:
                del self.refused[sym]
            self._state_dirty |= bool(expired)
        wanted = upstream_channels(table.union(now))
        if self.refused:
            wanted = {ch: syms - self.refused.keys() for ch, syms in wanted.items()}
            wanted = {ch: syms for ch, syms in wanted.items() if syms}
        plan = plan_changes(
            self.subs, wanted, now, int(self.s.linger_seconds * 1e9),
            self.interest.cap(self.asset),
        )  # fmt: skip
        if plan.unsubscribe:
            await self._send(stream, "unsubscribe", to_alpaca(plan.unsubscribe))
        if plan.subscribe:
            await self._send(stream, "subscribe", to_alpaca(plan.subscribe))
        self.subs.apply(plan)
        resend, self._resend = self._resend, []
        for sent in resend:
            await self._send_one(stream, sent)
        held = len(self.subs.symbols())
        if not held:
            self._held_since_ns = None
        elif self._held_since_ns is None:
            self._held_since_ns = time.time_ns()
        self.metrics.symbols_subscribed.labels(str(self.asset)).set(len(self.subs.held_symbols()))
        if self._state_dirty:
            self._state_dirty = False
            try:
                await self.interest.put_upstream_state(
                    self.asset, self.subs.held_symbols(), self.refused
                )
            except Exception:
                self._state_dirty = True
                raise

    async def _backfill(self, gap_from_ns: int) -> None:
        """Fetch every minute bar of the gap over REST (all pages, every symbol, within
        `backfill_max_seconds`); publish them with backfill=True and count what came back."""
        if self.rest is None or self.asset is not AssetClass.STOCKS:
            return
        await asyncio.sleep(0.5)  # let the subscription settle first
        symbols = sorted(self.subs.held.get(Channel.BARS, set()))
        if not symbols:
            return
        start = datetime.fromtimestamp(gap_from_ns / 1e9, UTC).replace(second=0, microsecond=0)
        start -= timedelta(minutes=1)
        deadline = time.monotonic() + self.s.backfill_max_seconds
        rest = self.rest
        # the stream's own tape (a `delayed_sip` stream: SIP as far as the plan allows)
        feed = self.feed if self.feed in ("iex", "sip") else rest.client.history_feed(None)
        token: str | None = None
        bars_n, pages, outcome = 0, 0, "complete"
        per_symbol: dict[str, int] = {}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome = "partial"
                break
            page = functools.partial(_bars_page, symbols, start, token, feed)
            try:
                rows, token = await asyncio.wait_for(
                    rest.call("bars", ("backfill", tuple(symbols), start, feed, token), page), left
                )
            except Exception as exc:
                raise_if_cancelling()
                outcome = "partial" if pages else "failed"
                log.warning("backfill of %d symbols stopped: %s", len(symbols), exc)
                break
            pages += 1
            self.metrics.backfill_pages.inc()
            for sym, bars in rows.items():
                for b in bars:
                    payload = bar_payload({**b, "S": sym}, feed, BarKind.MINUTE, backfill=True)
                    await self.publisher.publish_payload(Channel.BARS, payload)
                    bars_n += 1
                    per_symbol[sym] = per_symbol.get(sym, 0) + 1
            if not token:
                break
        self.metrics.backfill_bars.inc(bars_n)
        self.metrics.backfill_gaps.labels(outcome).inc()
        self.metrics.backfill_last_bars.set(bars_n)
        self.metrics.backfill_last_symbols.set(len(per_symbol))
        log.info(
            "backfill %s: %d minute bars for %d of %d symbols in %d pages since %s",
            outcome, bars_n, len(per_symbol), len(symbols), pages, start.isoformat(),
        )  # fmt: skip
