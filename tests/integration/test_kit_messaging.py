"""The kit's control-plane ack policy on a real nats-server (JetStream): nak delay, term, DLQ,
and a subscriber that never re-declares the stream it reads."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from raxx_service_kit.errors import PermanentError, RetryableError
from raxx_service_kit.messaging import HDR_REASON, control_router, jetstream_subscriber, make_broker
from raxx_service_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration


class Event(BaseModel):
    kind: str


async def test_nak_delay_term_and_dead_letter_on_a_real_server(own_nats: str) -> None:
    nc = await nats.connect(own_nats)
    js = nc.jetstream()
    # The owner declares the stream with a config the subscriber must not overwrite.
    await js.add_stream(StreamConfig(name="KITEV", subjects=["kit.ev.>"], max_msgs=1000))
    dead: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_dead(msg: Msg) -> None:
        await dead.put(msg)

    await nc.subscribe("dlq.svc.>", cb=on_dead)

    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(nats_url=own_nats), "kit-it")
    router = control_router("svc", registry, metrics_prefix="svc")
    deliveries: dict[str, list[float]] = {}
    done = asyncio.Event()

    @jetstream_subscriber(router, "kit.ev.>", stream="KITEV", durable="svc")
    async def handle(event: Event) -> None:
        seen = deliveries.setdefault(event.kind, [])
        seen.append(time.monotonic())
        if event.kind == "flaky" and len(seen) == 1:
            raise RetryableError("not yet", 1.0)
        if event.kind == "poison":
            raise PermanentError("never valid", code="never_valid")
        if event.kind == "flaky":
            done.set()

    broker.include_router(router)
    await broker.start()
    try:
        await js.publish("kit.ev.a", b'{"kind": "poison"}', headers={"X-Trace": "t1"})
        await js.publish("kit.ev.b", b"\xff not json")
        await js.publish("kit.ev.c", b'{"kind": "flaky"}')
        await asyncio.wait_for(done.wait(), 15)
        first, second = deliveries["flaky"]
        assert second - first >= 0.9, "nak(delay) was not honoured"

        parked = [await asyncio.wait_for(dead.get(), 10) for _ in range(2)]
        by_subject = {m.subject: m for m in parked}
        assert set(by_subject) == {"dlq.svc.kit.ev.a", "dlq.svc.kit.ev.b"}
        poison = by_subject["dlq.svc.kit.ev.a"]
        assert poison.headers is not None
        assert (poison.headers[HDR_REASON], poison.headers["X-Trace"]) == ("never_valid", "t1")
        assert by_subject["dlq.svc.kit.ev.b"].data == b"\xff not json"

        # term: neither poison message comes back, and nothing is left pending.
        info = await js.consumer_info("KITEV", "svc")
        deadline = time.monotonic() + 10
        while info.num_ack_pending or info.num_pending:
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.1)
            info = await js.consumer_info("KITEV", "svc")
        assert len(deliveries["poison"]) == 1
        stream = await js.stream_info("KITEV")
        assert stream.config.max_msgs == 1000  # the subscriber did not re-declare the stream
        sample = registry.get_sample_value(
            "svc_dead_letters_total", {"subject": "kit.ev.b", "reason": "undecodable"}
        )
        assert sample == 1.0
    finally:
        await broker.stop()
        await nc.close()


async def test_a_retry_that_reaches_max_deliver_is_dead_lettered_not_dropped(
    own_nats: str,
) -> None:
    nc = await nats.connect(own_nats)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="KITMD", subjects=["kit.md.>"]))
    dead: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_dead(msg: Msg) -> None:
        await dead.put(msg)

    await nc.subscribe("dlq.svc.>", cb=on_dead)
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(nats_url=own_nats), "kit-it")
    router = control_router("svc", registry, metrics_prefix="svc", max_deliver=3)
    calls = 0

    @jetstream_subscriber(router, "kit.md.>", stream="KITMD", durable="svc-md")
    async def handle(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RetryableError("still down", 0.1)

    broker.include_router(router)
    await broker.start()
    try:
        await js.publish("kit.md.x", b'{"kind": "x"}')
        parked = await asyncio.wait_for(dead.get(), 15)
        assert parked.subject == "dlq.svc.kit.md.x"
        assert parked.headers is not None
        assert parked.headers[HDR_REASON] == "max_deliver"
        assert parked.headers["Raxx-Dlq-Deliveries"] == "3"
        assert calls == 3
    finally:
        await broker.stop()
        await nc.close()
