"""Fidelity: alpaca-py's own stream clients, unmodified, against the simulator over sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from alpaca.data.live import OptionDataStream, StockDataStream
from alpaca.data.models import Bar, Quote, Trade

from .conftest import Sim


async def wait_for(pred: Callable[[], bool], seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not pred():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(stream: Any) -> AsyncIterator[None]:
    """alpaca-py's `run()` owns a loop; its coroutine runs as a task on ours instead."""
    task = asyncio.create_task(stream._run_forever())
    try:
        yield
    finally:
        await stream.stop_ws()
        await asyncio.wait_for(task, 10)


def _two_sided(x: object) -> bool:
    return isinstance(x, Quote) and x.bid_price > 0 and x.ask_price > 0


async def test_stock_stream_delivers_parsed_quotes_and_trades(sim: Sim) -> None:
    stream = StockDataStream("sim-key", "sim-secret", url_override=sim.ws("/v2/iex"))
    got: list[Any] = []

    async def handler(x: Any) -> None:
        got.append(x)

    stream.subscribe_quotes(handler, "AAPL")
    stream.subscribe_trades(handler, "AAPL", "MSFT")
    async with running(stream):
        await wait_for(
            lambda: (
                any(_two_sided(x) for x in got)
                and {x.symbol for x in got if isinstance(x, Trade)} == {"AAPL", "MSFT"}
            )
        )
        state = (await sim.get("/sim/state")).json()
    assert len(state["connections"]) == 1
    conn = state["connections"][0]
    assert conn["encoding"] == "msgpack"
    assert conn["subscriptions"]["quotes"] == ["AAPL"]
    assert conn["subscriptions"]["trades"] == ["AAPL", "MSFT"]
    assert conn["subscriptions"]["corrections"] == ["AAPL", "MSFT"]
    # the sim also sends one-sided quotes (a side priced 0, as Alpaca does); check a full one
    quote = next(x for x in got if _two_sided(x))
    assert quote.symbol == "AAPL"
    assert quote.ask_price >= quote.bid_price > 0
    assert quote.timestamp.tzinfo is not None


async def test_stock_stream_receives_published_bar(sim: Sim) -> None:
    stream = StockDataStream("sim-key", "sim-secret", url_override=sim.ws("/v2/iex"))
    bars: list[Bar] = []

    async def on_bar(b: Bar) -> None:
        bars.append(b)

    stream.subscribe_bars(on_bar, "AAPL")
    async with running(stream):
        await wait_for(lambda: any(c.subs["bars"] for c in sim.state.engine.connections))
        body = {"type": "bar", "symbol": "AAPL", "open": 10, "high": 12, "low": 9, "close": 11}
        r = await sim.post("/sim/publish", body | {"volume": 500})
        assert r.json() == {"delivered": 1}
        await wait_for(lambda: bool(bars))
    b = bars[0]
    assert (b.symbol, b.open, b.high, b.low, b.close, b.volume) == ("AAPL", 10, 12, 9, 11, 500)


async def test_option_stream_parses_msgpack_timestamps(sim: Sim) -> None:
    chain = (await sim.get("/v1beta1/options/snapshots/AAPL", params={"limit": 2})).json()
    symbols = sorted(chain["snapshots"])
    stream = OptionDataStream("sim-key", "sim-secret", url_override=sim.ws("/v1beta1/opra"))
    got: list[Any] = []

    async def handler(x: Any) -> None:
        got.append(x)

    stream.subscribe_quotes(handler, *symbols)
    stream.subscribe_trades(handler, *symbols)
    async with running(stream):
        await wait_for(
            lambda: (
                any(isinstance(x, Quote) for x in got) and any(isinstance(x, Trade) for x in got)
            )
        )
    assert {x.symbol for x in got} <= set(symbols)
    trade = next(x for x in got if isinstance(x, Trade))
    assert trade.timestamp.tzinfo is not None
    assert trade.conditions == "I"  # options carry a single condition string


async def test_stock_stream_reconnects_and_resubscribes_after_drop(sim: Sim) -> None:
    stream = StockDataStream("sim-key", "sim-secret", url_override=sim.ws("/v2/iex"))
    got: list[Trade] = []

    async def handler(x: Trade) -> None:
        got.append(x)

    stream.subscribe_trades(handler, "SPY")
    async with running(stream):
        await wait_for(lambda: bool(got))
        first_id = sim.state.engine.connections[0].id
        r = await sim.post("/sim/faults", {"drop_connections": True})
        assert r.json()["last_actions"] == ["dropped 1"]
        await wait_for(
            lambda: any(
                c.id != first_id and c.subs["trades"] == {"SPY"}
                for c in sim.state.engine.connections
            ),
            seconds=15,
        )
        seen = len(got)
        await wait_for(lambda: len(got) > seen)
        assert len(sim.state.engine.connections) == 1
