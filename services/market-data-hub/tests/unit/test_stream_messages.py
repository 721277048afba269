"""Issue 11 on the hot path: one-sided quotes, corrections/cancels/LULD/imbalances, nothing
dropped silently, and only what Alpaca acknowledged is published."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgpack
import pytest
from market_data_hub.domain import Subscriptions
from market_data_hub.domain.leases import Limits, OwnerLeases, SlotTable, apply_request
from market_data_hub.metrics import Metrics
from market_data_hub.normalize import convert
from market_data_hub.publisher import FeedPublisher
from market_data_hub.upstream import upstream_channels
from pydantic import BaseModel
from raxx_contracts import (
    AssetClass,
    Channel,
    Imbalance,
    InterestQuota,
    Luld,
    Quote,
    TradeCancel,
    TradeCorrection,
    decode,
    dumps,
    encode,
)

T = msgpack.Timestamp(1_700_000_000, 123_456_789)


def _roundtrip(model: type[BaseModel], m: dict[str, Any]) -> tuple[Channel, Any]:
    route = convert(AssetClass.STOCKS, m, "iex")
    assert route is not None
    channel, payload = route
    data = dumps(payload)
    decoded = decode(model, data)
    assert encode(decoded) == data  # the hot path's dict is byte-identical to the model
    return channel, decoded


@pytest.mark.parametrize(("side", "other"), [("a", "b"), ("b", "a")])
def test_a_side_priced_zero_is_null_and_the_quote_one_sided(side: str, other: str) -> None:
    m = {"T": "q", "S": "AAPL", "t": T, "bp": 100.5, "bs": 300, "ap": 100.6, "as": 200,
         "bx": "V", "ax": "V", "c": ["R"], "z": "C"}  # fmt: skip
    m[f"{side}p"], m[f"{side}s"] = 0, 0
    ch, q = _roundtrip(Quote, m)
    assert ch is Channel.QUOTES
    names = {"a": "ask", "b": "bid"}
    assert getattr(q, f"{names[side]}_price") is None
    assert getattr(q, f"{names[side]}_size") is None
    assert getattr(q, f"{names[other]}_price") in (Decimal("100.5"), Decimal("100.6"))
    assert q.one_sided is True


def test_a_two_sided_quote_is_not_one_sided() -> None:
    m = {"T": "q", "S": "AAPL", "t": T, "bp": 1.5, "bs": 3, "ap": 1.6, "as": 2}
    _, q = _roundtrip(Quote, m)
    assert (q.bid_price, q.ask_size, q.one_sided) == (Decimal("1.5"), 2, False)


def test_corrections_cancels_lulds_and_imbalances_are_contract_models() -> None:
    ch, c = _roundtrip(TradeCorrection, {
        "T": "c", "S": "BRK.B", "x": "V", "oi": 7, "op": 10.0, "os": 100, "oc": ["@"],
        "ci": 8, "cp": 10.5, "cs": 200, "cc": ["@", "I"], "t": T, "z": "A",
    })  # fmt: skip
    assert ch is Channel.CORRECTIONS
    assert (c.original_trade_id, c.original_price, c.corrected_price) == (
        7, Decimal("10"), Decimal("10.5"),
    )  # fmt: skip
    assert (c.corrected_size, c.corrected_conditions) == (200, ("@", "I"))
    ch, x = _roundtrip(TradeCancel, {
        "T": "x", "S": "AAPL", "i": 9, "x": "V", "p": 12.25, "s": 50, "a": "C", "t": T, "z": "C",
    })  # fmt: skip
    assert ch is Channel.CANCELS
    assert (x.trade_id, x.price, x.size, x.action) == (9, Decimal("12.25"), 50, "C")
    ch, lu = _roundtrip(Luld, {
        "T": "l", "S": "AAPL", "u": 105.0, "d": 95.5, "i": "B", "t": T, "z": "C",
    })  # fmt: skip
    assert ch is Channel.LULDS
    assert (lu.limit_up_price, lu.limit_down_price) == (Decimal("105"), Decimal("95.5"))
    ch, im = _roundtrip(Imbalance, {"T": "i", "S": "AAPL", "p": 101.25, "t": T, "z": "C"})
    assert (ch, im.price) == (Channel.IMBALANCES, Decimal("101.25"))


class _Pub:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.is_connected = False  # publish_batch falls back to publish()
        self.is_draining_pubs = False

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, data))


def _publisher(subs: Subscriptions) -> tuple[FeedPublisher, _Pub, Metrics]:
    nc, metrics = _Pub(), Metrics()
    pub = FeedPublisher(nc, AssetClass.STOCKS, "iex", subs, None, metrics, lambda m: None)  # type: ignore[arg-type]
    return pub, nc, metrics


def _frame(*msgs: dict[str, Any]) -> bytes:
    return msgpack.packb(list(msgs))  # type: ignore[no-any-return]


async def test_unknown_types_are_counted_by_type_and_companions_ride_on_trades() -> None:
    subs = Subscriptions()
    subs.acknowledge({"trades": ["AAPL"], "quotes": []})
    pub, nc, metrics = _publisher(subs)
    frame = _frame(
        {"T": "x", "S": "AAPL", "i": 1, "p": 1.0, "s": 1, "a": "C", "t": T},
        {"T": "c", "S": "AAPL", "oi": 1, "op": 1.0, "os": 1, "ci": 2, "cp": 1.1, "cs": 1, "t": T},
        {"T": "zz", "S": "AAPL"},
        {"T": "zz", "S": "AAPL"},
        {"T": "o", "S": "AAPL"},
    )
    await pub.handle_frame(0, frame)
    assert [s for s, _ in nc.sent] == [
        "mdcap.rt.stocks.cancels.AAPL",
        "mdcap.rt.stocks.corrections.AAPL",
    ]
    counted = metrics.unpublished_types.labels("stocks", "zz")._value.get()
    assert counted == 2
    assert metrics.unpublished_types.labels("stocks", "o")._value.get() == 1


async def test_only_what_alpaca_acknowledged_is_published() -> None:
    subs = Subscriptions()
    pub, nc, _ = _publisher(subs)
    quote = {"T": "q", "S": "MSFT", "t": T, "bp": 1.0, "bs": 1, "ap": 1.1, "as": 1}
    await pub.handle_frame(0, _frame(quote))
    assert nc.sent == []  # asked for, not acknowledged yet
    acked = {"T": "subscription", "quotes": ["MSFT"], "trades": []}
    pub.on_control = lambda m: subs.acknowledge(m)
    await pub.handle_frame(0, _frame(acked))
    await pub.handle_frame(0, _frame(quote))
    assert [s for s, _ in nc.sent] == ["mdcap.rt.stocks.quotes.MSFT"]


def test_a_lease_on_corrections_or_cancels_holds_trades_upstream() -> None:
    got = upstream_channels(
        {Channel.CORRECTIONS: {"A"}, Channel.CANCELS: {"B"}, Channel.LULDS: {"C"}}
    )
    assert got == {Channel.TRADES: {"A", "B"}, Channel.LULDS: {"C"}}


def test_a_symbol_alpaca_refused_is_rejected_typed_and_its_lease_dropped() -> None:
    quota = InterestQuota(
        max_symbols_per_user=10, max_consumers_per_user=2, user_cap_share=1, tier_cap_share=1
    )
    limits = Limits(30, quota, 1 << 20)
    kw: dict[str, Any] = {
        "tier": "pro", "consumer": "c", "channels": (Channel.QUOTES,), "lease_seconds": 60,
        "release": False, "now_ns": 10**18, "limits": limits,
    }  # fmt: skip
    first = apply_request(OwnerLeases(), SlotTable(AssetClass.STOCKS), symbols=("AAPL", "ZZZ"),
                          **kw)  # fmt: skip
    assert first.accepted == ("AAPL", "ZZZ")
    why = {"ZZZ": "Alpaca refused the subscription (405 ...)"}
    again = apply_request(first.owner, first.slots, symbols=("AAPL", "ZZZ"), refused=why, **kw)
    assert again.accepted == ("AAPL",)
    assert [(r.symbol, r.reason) for r in again.rejected] == [("ZZZ", "upstream_refused")]
    assert "ZZZ" not in again.owner.holdings()
    assert again.slots.held(10**18) == {"AAPL"}


async def test_a_reader_queue_overflow_marks_a_gap_and_starts_a_backfill() -> None:
    import asyncio

    from market_data_hub.domain import FakeClock
    from market_data_hub.publisher import FrameQueue
    from market_data_hub.settings import Settings
    from market_data_hub.upstream import Upstream

    metrics = Metrics()
    clock = FakeClock(1_700_000_000 * 10**9)
    up = Upstream(
        AssetClass.STOCKS, Settings(watchdog_seconds=0.4), _Pub(), None, None, None, None,  # type: ignore[arg-type]
        metrics, clock,
    )  # fmt: skip
    started: list[int] = []
    began = asyncio.Event()

    def record(gap_ns: int) -> None:
        started.append(gap_ns)
        began.set()

    up._start_backfill = record  # type: ignore[method-assign]
    up.publisher.last_data_ns = 1_699_999_990 * 10**9
    queue = up._queue = FrameQueue(4, up._on_overflow)
    for i in range(6):
        queue.put(i)
    assert metrics.dropped_frames.labels("stocks")._value.get() == 2
    assert started == []  # not while the queue is still full
    queue.items.clear()  # the publisher caught up
    task = asyncio.create_task(up._watchdog())
    try:
        await asyncio.wait_for(began.wait(), 5)
    finally:
        task.cancel()
    assert started == [1_699_999_990 * 10**9]  # from the last data before the loss
