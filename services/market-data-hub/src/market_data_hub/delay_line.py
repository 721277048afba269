"""The delayed path: the leader reads each real-time capture stream (`MD_RT_STOCKS`,
`MD_RT_OPTIONS`) and releases every message at event time + delay onto `mdcap.delayed...`,
which the delayed capture stream (`MD_DELAYED_<ASSET>`) stores and republishes on
`md.delayed...`. One line per real-time stream, each with its own consumer.

Where to resume is read from what was stored, not from what was sent: every delayed message
carries `Raxx-Source-Sequence` (its real-time stream sequence), and the line starts after the
one on the last message of its delayed stream. It starts so on every (re)start, failover and
NATS reconnect: what a dying connection swallowed (published into a socket the server never
read) is released again instead of skipped. The hub's memory holds one fetched batch at
most; the backlog stays in JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from raxx_contracts import AssetClass, Path, subjects

from market_data_hub.adapters.nats import Buckets, LatestStore, publish_batch
from market_data_hub.aio import raise_if_cancelling
from market_data_hub.domain import Clock, DelayGate, DelayItem
from market_data_hub.metrics import Metrics
from market_data_hub.normalize import event_ns
from market_data_hub.settings import Settings

log = logging.getLogger(__name__)
BATCH = 256


class Reconnected(Exception):
    """The NATS connection dropped since the line started: resume from what was stored."""


def stream_seq(msg: Msg) -> int:
    """Stream sequence of a JetStream message, read from its `$JS.ACK...` reply subject.

    Same tokens as nats-py's `msg.metadata` (v1: 9 tokens, sequence at 5; v2 with domain and
    account hash: 12, sequence at 7) without building the metadata objects per message.
    """
    reply = msg.reply
    if reply.startswith("$JS.ACK."):
        tokens = reply.split(".")
        if len(tokens) == 9:
            return int(tokens[5])
        if len(tokens) >= 12:
            return int(tokens[7])
    return int(msg.metadata.sequence.stream)


async def resume_after(js: JetStreamContext, rt_stream: str, delayed_stream: str) -> int:
    """The `rt_stream` sequence of the last message `delayed_stream` stored (0: none yet)."""
    last = (await js.stream_info(delayed_stream)).state.last_seq
    if not last:
        return 0
    msg = await js.get_msg(delayed_stream, last)
    source = (msg.headers or {}).get(subjects.HDR_SOURCE_SEQUENCE)
    if source is None:  # not written by a delay line: release only what comes from now on
        log.warning("%s: last message (sequence %d) has no %s; releasing only new messages",
                    delayed_stream, last, subjects.HDR_SOURCE_SEQUENCE)  # fmt: skip
        return int((await js.stream_info(rt_stream)).state.last_seq)
    return int(source)


class DelayLine:
    """Leader-only task that releases one real-time capture stream onto the delayed path."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        buckets: Buckets,
        latest: LatestStore | None,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        asset: AssetClass = AssetClass.STOCKS,
    ) -> None:
        self.nc = nc
        self.js = js
        self.b = buckets
        self.latest = latest
        self.metrics = metrics
        self.clock = clock
        self.asset = asset
        self.stream = buckets.streams.get((Path.RT, asset)) or subjects.capture_stream(
            Path.RT, asset
        )
        self.delayed_stream = buckets.streams.get((Path.DELAYED, asset)) or subjects.capture_stream(
            Path.DELAYED, asset
        )
        self.consumer = f"{settings.bucket_prefix}_delay_line_{asset}"
        self._depth = metrics.delay_depth.labels(str(asset))
        self._lag = metrics.delay_lag.labels(str(asset))
        self.gate = DelayGate(
            clock,
            int(settings.delay_seconds * 1e9),
            event_ns,
            self._publish,
            on_skip=lambda _item: self.metrics.delay_skipped.inc(),
            flush=self._flush,
        )
        self._reconnects = 0
        self._routes: dict[str, tuple[str, str, bool]] = {}
        """rt capture subject -> (delayed capture subject, metric key, keeps a latest value)."""
        self._counters: dict[str, Any] = {}
        self._batch: list[tuple[str, bytes]] = []
        self._seqs: list[int] = []
        self._counts: dict[str, int] = {}

    def _route(self, subject: str) -> tuple[str, str, bool]:
        route = self._routes.get(subject)
        if route is None:
            parts = subject.split(".", 4)  # mdcap.rt.<asset>.<channel>.<SYM>
            key = f"{parts[2]}.{parts[3]}"
            if key not in self._counters:
                self._counters[key] = self.metrics.messages_out.labels(
                    parts[2], parts[3], str(Path.DELAYED)
                )
            if len(self._routes) > 50_000:
                self._routes.clear()
            delayed = subjects.to_capture(subjects.to_delayed(subjects.from_capture(subject)))
            route = (delayed, key, parts[3] in ("quotes", "trades"))
            self._routes[subject] = route
        return route

    async def _publish(self, item: DelayItem) -> None:
        """Queue one due message; `_flush` hands the queue to NATS before any wait."""
        delayed, key, keep_latest = self._route(item.subject)
        self._batch.append((delayed, item.data))
        self._seqs.append(item.seq)
        self._counts[key] = self._counts.get(key, 0) + 1
        if keep_latest and self.latest is not None:
            self.latest.mark(delayed, item.data)

    def _dropped(self) -> bool:
        return not self.nc.is_connected or self.nc.stats["reconnects"] != self._reconnects

    def _check_connection(self) -> None:
        if self._dropped():
            raise Reconnected

    async def _flush(self) -> None:
        # Nothing goes into nats-py's reconnect buffer: once the connection dropped, what was
        # stored decides where the line resumes (a buffered publish would repeat it).
        self._check_connection()
        batch, self._batch = self._batch, []
        seqs, self._seqs = self._seqs, []
        if batch:
            await publish_batch(self.nc, batch, seqs)
        counts, self._counts = self._counts, {}
        for key, n in counts.items():
            self._counters[key].inc(n)

    async def _metrics_loop(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(0.5)
            try:
                info = await self.js.stream_info(self.stream)
            except Exception as exc:
                raise_if_cancelling()
                log.debug("delay-line depth not read: %s", exc)
                continue
            self._depth.set(max(0, info.state.last_seq - self.gate.released_seq))
            due = self.gate.head_due_ns
            lag = (self.clock.now_ns() - due) / 1e9 if due else 0.0
            self._lag.set(max(0.0, lag))

    async def run(self) -> None:
        """Release forever (cancel to stop); after a reconnect, resume from what was stored."""
        metrics = asyncio.create_task(self._metrics_loop())
        try:
            while True:
                raise_if_cancelling()
                try:
                    await self._run_connected()
                except Exception as exc:
                    raise_if_cancelling()
                    if not isinstance(exc, Reconnected) and not self._dropped():
                        raise  # not the connection: the supervisor restarts the line
                    # An outage is waited out here, not counted as crashes (the supervisor
                    # would give the line up during a long one).
                    log.warning("delay line %s: the NATS connection dropped (%s); resuming "
                                "after what %s stored", self.stream, type(exc).__name__,
                                self.delayed_stream)  # fmt: skip
                    self._batch, self._seqs, self._counts = [], [], {}
                    while not self.nc.is_connected:  # noqa: ASYNC110 (no awaitable in nats-py)
                        await asyncio.sleep(0.05)
        finally:
            metrics.cancel()

    async def _run_connected(self) -> None:
        self._reconnects = self.nc.stats["reconnects"]
        await self.nc.flush(timeout=5)
        start = await resume_after(self.js, self.stream, self.delayed_stream)
        self.gate.released_seq = start
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, self.consumer)
        cfg = ConsumerConfig(
            durable_name=self.consumer,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            opt_start_seq=start + 1 if start else None,
            filter_subject=subjects.capture_root(Path.RT, self.asset),
            max_waiting=1,
        )
        await self.js.add_consumer(self.stream, cfg)
        psub = await self.js.pull_subscribe_bind(self.consumer, stream=self.stream)
        log.info("delay line %s resuming after stream sequence %d", self.stream, start)
        try:
            while True:
                raise_if_cancelling()
                self._check_connection()
                try:
                    msgs = await psub.fetch(BATCH, timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    raise_if_cancelling()
                    continue
                items = [DelayItem(stream_seq(m), m.subject, m.data) for m in msgs]
                await self.gate.release(items)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
