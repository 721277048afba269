"""The outbox relay's publishing on the kit's faststream broker under `TestNatsBroker` (no
server): subjects, Nats-Msg-Id, stream per family, id order and the done-marker rule. Dedup
and PubAck duplicates live in JetStream: tests/integration/test_settler_delivery.py."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from eod_settler.adapters.nats import Publishers, stream_for
from eod_settler.adapters.postgres import OutboxRow
from eod_settler.metrics import Metrics
from eod_settler.relay import OutboxRelay
from eod_settler.runtime import new_broker
from eod_settler.settings import Settings
from faststream.nats import JStream, NatsMessage, TestNatsBroker
from raxx_contracts import AssetClass, subjects

DAY = dt.date(2025, 12, 23)


@dataclass
class FakeOutbox:
    """`Store.claim_outbox` in memory: unpublished rows in id order, marked when acked."""

    rows: list[OutboxRow]
    published: list[int] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[tuple[list[OutboxRow], list[int]]]:
        todo = [r for r in self.rows if r.id not in self.published][:limit]
        acked: list[int] = []
        yield todo, acked
        self.published += acked

    async def outbox_depth(self) -> int:
        return len(self.rows) - len(self.published)


def settle(i: int, symbol: str, asset: AssetClass = AssetClass.STOCKS) -> OutboxRow:
    return OutboxRow(
        i, "settle", "official_close", subjects.settle(asset, DAY, symbol),
        subjects.settle_msg_id(DAY, symbol, 1), f'{{"symbol":"{symbol}"}}'.encode(),
    )  # fmt: skip


def done(i: int) -> OutboxRow:
    return OutboxRow(i, "done", None, subjects.settle_done(DAY), f"done:{DAY}", b"{}")


async def test_relay_publishes_in_id_order_with_msg_ids_and_done_last() -> None:
    settings = Settings(env="test", publish_batch=3)
    broker, pubs = new_broker(settings)
    seen: list[tuple[str, dict[str, Any], bytes]] = []

    @broker.subscriber(subjects.SETTLES_ANY, stream=JStream(subjects.SETTLES_STREAM, declare=False))
    async def on_settle(msg: NatsMessage) -> None:
        seen.append((msg.raw_message.subject, dict(msg.headers), msg.body))

    @broker.subscriber(
        subjects.CORPACTIONS_ANY, stream=JStream(subjects.CORPACTIONS_STREAM, declare=False)
    )
    async def on_corp(msg: NatsMessage) -> None:
        seen.append((msg.raw_message.subject, dict(msg.headers), msg.body))

    corp = OutboxRow(
        5, "corpaction", None, subjects.corpactions(DAY, "AAPL"),
        subjects.corpaction_msg_id(DAY, "AAPL", "a1", 1), b"{}",
    )  # fmt: skip
    rows = [
        settle(1, "AAPL"), settle(2, "BRK.B"), done(3),
        settle(4, "SPY251223C00700000", AssetClass.OPTIONS), corp,
    ]  # fmt: skip
    outbox = FakeOutbox(rows)
    metrics = Metrics()
    relay = OutboxRelay(outbox, pubs, metrics, batch=3, ack_wait=5.0)  # type: ignore[arg-type]
    async with TestNatsBroker(broker):
        assert await relay.drain() == 5
    assert outbox.published == [1, 2, 3, 4, 5]
    sent = [(s, h["Nats-Msg-Id"]) for s, h, _ in seen]
    expected = [(r.subject, r.msg_id) for r in rows]
    # A batch is published concurrently (TestNatsBroker may interleave it; the real stream
    # keeps the order: tests/integration/test_settler_streams.py), but the done marker goes
    # out alone, after every row before it and before every row after it.
    assert set(sent[:2]) == set(expected[:2])
    assert sent[2] == expected[2]
    assert set(sent[3:]) == set(expected[3:])
    assert dict((s, b) for s, _, b in seen)[rows[0].subject] == b'{"symbol":"AAPL"}'
    assert metrics.registry.get_sample_value("eod_outbox_depth") == 0


def test_every_family_has_its_publisher_and_stream() -> None:
    _, pubs = new_broker(Settings(env="test"))
    cases = {
        subjects.settle(AssetClass.STOCKS, DAY, "AAPL"): (pubs.stocks, subjects.SETTLES_STREAM),
        subjects.settle(AssetClass.OPTIONS, DAY, "SPY251223C00700000"): (
            pubs.options, subjects.SETTLES_STREAM,
        ),
        subjects.settle_done(DAY): (pubs.done, subjects.SETTLES_STREAM),
        subjects.corpactions(DAY, "AAPL"): (pubs.corpactions, subjects.CORPACTIONS_STREAM),
    }  # fmt: skip
    for subject, (pub, stream) in cases.items():
        assert pubs.for_subject(subject) is pub
        assert stream_for(subject) == stream
        assert pub.stream.name == stream
        assert pub.stream.declare is False  # the settler's ensure_stream is the one declaration
        assert pub.timeout == Settings(env="test").publish_timeout_seconds > 0.5


def test_publishers_type() -> None:
    assert isinstance(new_broker(Settings(env="test"))[1], Publishers)
