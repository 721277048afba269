"""Outbox relay: publishes unpublished outbox rows to JetStream (through the kit's faststream
broker) in id order and marks them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from eod_settler.adapters.nats import Publishers, publish_batch
from eod_settler.adapters.postgres import Store
from eod_settler.metrics import Metrics

log = logging.getLogger(__name__)


class OutboxRelay:
    """At-least-once from the outbox, exactly-once on the stream via `Nats-Msg-Id` dedup.

    A row is marked only after JetStream acked it; a crash between ack and mark republishes it
    with the same Msg-Id, which the stream drops (dedup window >= 2 days). A batch marker
    (`done`) is published only when every row before it is published, so a consumer that sees
    `md.settle.done.<date>` already has the date's settles.
    """

    def __init__(
        self,
        store: Store,
        publishers: Publishers,
        metrics: Metrics,
        batch: int = 1000,
        ack_wait: float = 10.0,
    ) -> None:
        self._store = store
        self._publishers = publishers
        self._metrics = metrics
        self._batch = batch
        self._ack_wait = ack_wait
        self._wake = asyncio.Event()
        self.acked = 0
        """Rows this relay published and marked (since it was built)."""

    @property
    def publishers(self) -> Publishers:
        """The publishers this relay sends through."""
        return self._publishers

    def wake(self) -> None:
        """Tell the relay new rows are waiting."""
        self._wake.set()

    async def drain_once(self) -> int:
        """Publish one batch; returns the number of rows published and marked."""
        async with self._store.claim_outbox(self._batch) as (rows, acked):
            if not rows:
                return 0
            # A done marker goes out only once everything before it is published.
            cut = next((i for i, r in enumerate(rows) if r.kind == "done" and i > 0), len(rows))
            if rows[0].kind == "done":
                cut = 1
            todo = rows[:cut]
            results = await publish_batch(
                self._publishers, [(r.subject, r.msg_id, r.payload) for r in todo], self._ack_wait
            )
            for row, (ok, dup) in zip(todo, results, strict=True):
                if not ok:
                    # Keep id order: stop at the first failure, retry from it next time.
                    break
                acked.append(row.id)
                self.acked += 1
                if dup:
                    self._metrics.duplicates.inc()
                elif row.kind == "settle":
                    self._metrics.published.labels(row.source or "unknown").inc()
            if len(acked) < len(todo):
                log.warning(
                    "relay: %d of %d not acked; will retry", len(todo) - len(acked), len(todo)
                )
            return len(acked)

    async def drain(self) -> int:
        """Publish until the outbox is empty (or a publish fails); returns rows published."""
        total = 0
        while True:
            n = await self.drain_once()
            total += n
            if n == 0:
                break
        self._metrics.outbox_depth.set(await self._store.outbox_depth())
        return total

    async def run_forever(self, idle_poll: float = 2.0) -> None:
        """Drain whenever woken, and at least every `idle_poll` seconds."""
        await self.run_until(asyncio.Event(), idle_poll)

    async def run_until(self, stop: asyncio.Event, idle_poll: float = 2.0) -> None:
        """Drain whenever woken until `stop` is set (a run publishes while it writes)."""
        while not stop.is_set():
            self._wake.clear()
            await self.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle_poll)
