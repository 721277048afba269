"""Reading the capture streams (`MD_RT_STOCKS`, `MD_RT_OPTIONS`): an ephemeral pull consumer
filtered to the wanted subjects, starting at a time, no acks, deleted when done.

Every read owns exactly one server-side consumer, deleted in `finally` (and, should the
process die, removed by the server after `inactive_threshold`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncGenerator, Sequence

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from raxx_contracts import subjects

from md_replay.domain import NS, Record
from md_replay.errors import ReplayError

CONSUMER_PREFIX = "mdr"
INACTIVE_SECONDS = 30.0
PULL_TIMEOUT = 10.0


def _record(msg: Msg) -> Record:
    # `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`
    # (v1) or with domain and account hash (v2): the last tokens are the same.
    tokens = msg.reply.split(".")
    return (subjects.from_capture(msg.subject), int(tokens[-4]), int(tokens[-2]), msg.data)


def _pending(msg: Msg) -> int:
    return int(msg.reply.split(".")[-1])


class CaptureReader:
    """Reads one capture stream in stream order between two instants."""

    def __init__(self, nc: Client, batch: int = 2000) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.batch = batch
        self.open_consumers: set[str] = set()

    async def _pull(self, stream: str, consumer: str) -> AsyncGenerator[list[Msg], None]:
        """Raw `no_wait` pull requests into one inbox callback (nats-py's `fetch` costs
        ~0.4 ms a message here: measured by scripts/bench_capture_read.py)."""
        inbox = self.nc.new_inbox()
        got: list[Msg] = []
        done = asyncio.Event()

        async def on(msg: Msg) -> None:
            status = (msg.headers or {}).get("Status")
            if status is not None:
                done.set()  # 404 no messages, 408 expired, 409: this batch is over
                return
            got.append(msg)
            if len(got) >= self.batch:
                done.set()

        sub = await self.nc.subscribe(inbox, cb=on, pending_msgs_limit=4 * self.batch)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        request = orjson.dumps({"batch": self.batch, "no_wait": True})
        try:
            while True:
                got.clear()
                done.clear()
                await self.nc.publish(next_subject, request, reply=inbox)
                try:
                    await asyncio.wait_for(done.wait(), PULL_TIMEOUT)
                except TimeoutError as exc:
                    raise ReplayError("unavailable", "the capture stream did not answer") from exc
                yield list(got)
                if len(got) < self.batch:
                    return
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    async def first_time_ns(self, stream: str) -> int | None:
        """Publish time of the oldest message the stream still holds (None: empty)."""
        try:
            info = await self.js.stream_info(stream)
            if not info.state.messages:
                return None
            msg = await self.js.get_msg(stream, seq=info.state.first_seq)
        except NotFoundError:
            return None
        except NatsError as exc:
            raise ReplayError("unavailable", "the capture streams cannot be read now") from exc
        return int(msg.time.timestamp() * 1_000_000) * 1000 if msg.time else None

    async def read(
        self, stream: str, filters: Sequence[str], start_ns: int, end_ns: int
    ) -> AsyncGenerator[list[Record], None]:
        """Batches of records published in [start_ns, end_ns), in stream order, ending when
        the stream holds nothing newer (the read does not wait for future messages)."""
        name = f"{CONSUMER_PREFIX}-{uuid.uuid4().hex[:16]}"
        start = dt.datetime.fromtimestamp(start_ns / NS, dt.UTC)
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_SECONDS,
            mem_storage=True,
        )
        if len(filters) == 1:
            config.filter_subject = filters[0]
        else:
            config.filter_subjects = list(filters)
        try:
            info = await self.js.add_consumer(stream, config)
        except NotFoundError:
            return
        except NatsError as exc:
            raise ReplayError("unavailable", "the capture streams cannot be read now") from exc
        self.open_consumers.add(name)
        try:
            if not info.num_pending:
                return
            async for batch in self._pull(stream, name):
                out = [_record(m) for m in batch if m.reply]
                done = bool(batch) and _pending(batch[-1]) == 0
                kept = [r for r in out if r[2] < end_ns]
                if kept:
                    yield kept
                if done or not batch or len(kept) < len(out):
                    return
        finally:
            self.open_consumers.discard(name)
            # Already gone is fine: the server drops it after inactive_threshold anyway.
            with contextlib.suppress(NatsError, NotFoundError):
                await self.js.delete_consumer(stream, name)
