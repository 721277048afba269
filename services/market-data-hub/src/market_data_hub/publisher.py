"""The hot path: raw upstream frames -> contract JSON on `mdcap.rt.*` (raw nats-py, orjson).

The capture stream (`MD_RT_<ASSET>`) stores each message and republishes it on its `md.rt.*`
subject with sequence headers, so subscribers see exactly what was stored.

The socket reader only appends `(received_ns, frame)` to a bounded deque; this publisher drains
it on its own task, so slow publishing can never stall the reader (Alpaca's 407 slow client).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from raxx_contracts import AssetClass, Channel, Path, dumps, subjects

from market_data_hub.adapters.alpaca_stream import decode_frame
from market_data_hub.adapters.nats import LatestStore, publish_batch
from market_data_hub.domain import Subscriptions
from market_data_hub.metrics import Metrics
from market_data_hub.normalize import converters

log = logging.getLogger(__name__)
LATEST_CHANNELS = (Channel.QUOTES, Channel.TRADES)
LATEST_OR_BARS = frozenset((Channel.QUOTES, Channel.TRADES, Channel.BARS))
CONTROL_TYPES = frozenset(("success", "error", "subscription"))


class FrameQueue:
    """Bounded hand-off between the reader and the publisher; drops the oldest when full."""

    def __init__(self, maxlen: int, on_drop: Callable[[], None]) -> None:
        self.items: collections.deque[tuple[int, Any]] = collections.deque()
        self.maxlen = maxlen
        self.ready = asyncio.Event()
        self._on_drop = on_drop

    def put(self, frame: Any) -> None:
        """Called by the reader for every frame; never blocks."""
        if len(self.items) >= self.maxlen:
            self.items.popleft()
            self._on_drop()
        self.items.append((time.perf_counter_ns(), frame))
        self.ready.set()


class FeedPublisher:
    """Decodes frames, normalizes messages, publishes them and notes control frames."""

    def __init__(
        self,
        nc: Client,
        asset: AssetClass,
        feed: str,
        subs: Subscriptions,
        latest: LatestStore | None,
        metrics: Metrics,
        on_control: Callable[[dict[str, Any]], None],
    ) -> None:
        self.nc = nc
        self.asset = asset
        self.feed = feed
        self.subs = subs
        self.latest = latest
        self.metrics = metrics
        self.on_control = on_control
        self._subject_maps: dict[Channel, dict[str, str]] = {ch: {} for ch in Channel}
        self._routes = converters(asset)
        self.last_data_ns = 0
        """Wall-clock time of the last data message (for the watchdog and backfill)."""
        self.last_bar_ns: dict[str, int] = {}
        a = self._a = str(asset)
        self._in = {ch: metrics.messages_in.labels(a, str(ch)) for ch in Channel}
        self._out = {ch: metrics.messages_out.labels(a, str(ch), str(Path.RT)) for ch in Channel}
        self._malformed = metrics.malformed.labels(a)
        self._unpublished = metrics.unpublished_types
        self._qgauge = metrics.reader_queue.labels(a)

    def subject(self, channel: Channel, symbol: str) -> str:
        """Cached real-time capture subject (`mdcap.rt...`) for (channel, symbol)."""
        cache = self._subject_maps[channel]
        subj = cache.get(symbol)
        if subj is None:
            subj = subjects.to_capture(subjects.rt(self.asset, channel, symbol))
            if len(cache) > 50_000:
                cache.clear()
            cache[symbol] = subj
        return subj

    async def publish_payload(self, channel: Channel, payload: dict[str, Any]) -> None:
        """Encode and publish one contract dict on its real-time capture subject."""
        subj = self.subject(channel, payload["symbol"])
        data = dumps(payload)
        await self.nc.publish(subj, data)
        self._out[channel].inc()
        if self.latest is not None and channel in LATEST_CHANNELS:
            self.latest.mark(subj, data)

    async def handle_frame(self, received_ns: int, frame: Any) -> None:
        """Publish every data message of one frame; skip (and count) what is malformed.

        The whole frame is converted first and then handed to NATS in one batch
        (:func:`publish_batch`), so the per-message cost is conversion + encoding only.
        """
        try:
            items = decode_frame(frame)
        except Exception:
            self._malformed.inc()
            return
        if not isinstance(items, list):
            self._malformed.inc()
            return
        counts_in: dict[Channel, int] = {}
        counts_out: dict[Channel, int] = {}
        held = self.subs.held
        routes = self._routes
        feed = self.feed
        subject_maps = self._subject_maps
        batch: list[tuple[str, bytes]] = []
        add = batch.append
        marked: list[tuple[Channel, str, str, bytes]] = []
        malformed = 0
        for m in items:
            try:
                typ = m["T"]
                route = routes.get(typ)
                if route is None:
                    if typ in CONTROL_TYPES:
                        self.on_control(m)
                        held = self.subs.held  # an acknowledgement replaces the held set
                    else:
                        self._unpublished.labels(self._a, str(typ)[:16]).inc()
                    continue
                channel, fn, carrier = route
                payload = fn(m, feed)
                counts_in[channel] = counts_in.get(channel, 0) + 1
                sym = payload["symbol"]
                if sym not in held.get(carrier, ()):
                    continue  # not acknowledged, or buffered data of a symbol just dropped
                subj = subject_maps[channel].get(sym) or self.subject(channel, sym)
                data = dumps(payload)
            except Exception:
                malformed += 1
                continue
            add((subj, data))
            counts_out[channel] = counts_out.get(channel, 0) + 1
            if channel in LATEST_OR_BARS:
                marked.append((channel, sym, subj, data))
        if malformed:
            self._malformed.inc(malformed)
        if counts_in:
            self.last_data_ns = time.time_ns()
        if batch:
            await publish_batch(self.nc, batch)
            self.metrics.publish_latency.observe((time.perf_counter_ns() - received_ns) / 1e9)
        latest = self.latest
        for channel, sym, subj, data in marked:
            if channel is Channel.BARS:
                self.last_bar_ns[sym] = time.time_ns()
            elif latest is not None:
                latest.mark(subj, data)
        for ch, n in counts_in.items():
            self._in[ch].inc(n)
        for ch, n in counts_out.items():
            self._out[ch].inc(n)

    async def run(self, queue: FrameQueue) -> None:
        """Drain `queue` forever."""
        items = queue.items
        while True:
            await queue.ready.wait()
            queue.ready.clear()
            self._qgauge.set(len(items))
            while items:
                received_ns, frame = items.popleft()
                await self.handle_frame(received_ns, frame)
