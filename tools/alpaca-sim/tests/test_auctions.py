"""Closing auctions, late close corrections and expired (inactive) option contracts."""

from __future__ import annotations

from datetime import datetime

from alpaca_sim.calendar import NY

from .conftest import RawFactory, Sim, SimFactory

DAY = "2025-12-23"
WINDOW = {"start": DAY, "end": "2025-12-24T00:00:00Z"}


async def _closes(sim: Sim, symbol: str) -> tuple[list[dict[str, object]], float]:
    auctions = (
        await sim.get("/v2/stocks/auctions", params={"symbols": symbol, "feed": "sip"} | WINDOW)
    ).json()["auctions"]
    bars = (
        await sim.get(
            "/v2/stocks/bars",
            params={"symbols": symbol, "timeframe": "1Day", "feed": "sip"} | WINDOW,
        )
    ).json()["bars"][symbol]
    days = auctions.get(symbol, [])
    return [c for d in days for c in d["c"]], float(bars[0]["c"])


async def test_closing_auction_is_the_official_close_near_but_not_on_the_bar(sim: Sim) -> None:
    closing, bar_close = await _closes(sim, "AAPL")
    (official,) = closing
    assert official["c"] == "M"
    assert official["t"].startswith("2025-12-23T21:00:00.")
    price = float(official["p"])  # type: ignore[arg-type]
    assert price != bar_close
    assert abs(price - bar_close) / bar_close < 0.001


async def test_no_auction_symbols_and_non_sip_feed(make_sim: SimFactory) -> None:
    sim = await make_sim(no_auction=["MSFT"])
    for symbol in ("MSFT", "NOAUCX"):
        closing, _bar = await _closes(sim, symbol)
        assert closing == []
    r = await sim.get("/v2/stocks/auctions", params={"symbols": "AAPL", "feed": "iex"} | WINDOW)
    assert r.status_code == 400


async def test_late_close_moves_bar_and_official_close(sim: Sim) -> None:
    r = await sim.post("/sim/late_close", {"symbol": "AAPL", "date": DAY, "close": 123.45})
    assert r.status_code == 200
    closing, bar_close = await _closes(sim, "AAPL")
    assert bar_close == 123.45
    assert [c["p"] for c in closing] == [123.45]
    assert (await sim.post("/sim/late_close", {"symbol": "AAPL", "date": "2025-12-25",
                                               "close": 1})).status_code == 400  # fmt: skip


async def test_inactive_contracts_are_the_expired_ones_with_their_last_close(sim: Sim) -> None:
    today = datetime.now(NY).date()
    body = (
        await sim.get(
            "/v2/options/contracts",
            params={"underlying_symbols": "AAPL", "status": "inactive", "limit": 10_000},
        )
    ).json()
    listed = body["option_contracts"]
    assert listed
    for c in listed:
        assert c["status"] == "inactive"
        assert c["expiration_date"] < today.isoformat()
        assert c["close_price_date"] == c["expiration_date"]
    active = (
        await sim.get("/v2/options/contracts", params={"underlying_symbols": "AAPL", "limit": 10})
    ).json()["option_contracts"]
    assert all(c["status"] == "active" for c in active)


async def _last_two_trades(sim: Sim, symbol: str) -> list[dict[str, object]]:
    trades = (
        await sim.get(
            "/v2/stocks/trades",
            params={"symbols": symbol, "feed": "sip", "sort": "desc", "limit": 2} | WINDOW,
        )
    ).json()["trades"][symbol]
    assert len(trades) == 2
    return list(trades)


async def test_correcting_a_past_sessions_last_print_moves_bar_and_auction_close(
    sim: Sim, raw: RawFactory
) -> None:
    await sim.post("/sim/config", {"rate": 0})  # only what the test publishes
    last, before = await _last_two_trades(sim, "AAPL")
    closing0, bar_close0 = await _closes(sim, "AAPL")
    assert float(last["p"]) == bar_close0  # type: ignore[arg-type]  # the last print is the close
    fixed = round(bar_close0 * 1.01, 2)
    ws = await raw(sim.ws("/v2/sip"))
    await ws.recv()
    await ws.auth()
    await ws.send({"action": "subscribe", "trades": ["AAPL"]})
    await ws.recv_until(lambda m: m.get("T") == "subscription")
    r = await sim.post(
        "/sim/publish",
        {"type": "correction", "symbol": "AAPL", "date": DAY, "price": fixed, "size": 300,
         "trade_id": last["i"]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    msg = await ws.recv_until(lambda m: m.get("T") == "c", seconds=30)
    assert (msg["oi"], msg["op"], msg["cp"], msg["cs"]) == (last["i"], last["p"], fixed, 300)
    closing, bar_close = await _closes(sim, "AAPL")
    assert bar_close == fixed
    assert [c["p"] for c in closing] == [fixed]
    assert closing != closing0
    bars = (
        await sim.get(
            "/v2/stocks/bars",
            params={"symbols": "AAPL", "timeframe": "1Day", "feed": "sip"} | WINDOW,
        )
    ).json()["bars"]["AAPL"][0]
    assert bars["l"] <= bars["c"] <= bars["h"]
    # a cancel of the (now corrected) last print falls back to the print before it
    r = await sim.post("/sim/publish", {"type": "cancel", "symbol": "AAPL", "date": DAY})
    assert r.status_code == 200, r.text
    closing, bar_close = await _closes(sim, "AAPL")
    assert bar_close == before["p"]
    assert [c["p"] for c in closing] == [before["p"]]


async def test_editing_a_print_that_is_not_the_last_changes_no_close(sim: Sim) -> None:
    _last, before = await _last_two_trades(sim, "MSFT")
    today = datetime.now(NY).date()
    closing0, bar_close0 = await _closes(sim, "MSFT")
    r = await sim.post(
        "/sim/publish",
        {"type": "cancel", "symbol": "MSFT", "date": DAY, "trade_id": before["i"]},
    )
    assert r.status_code == 200, r.text
    r = await sim.post(
        "/sim/publish",
        {"type": "correction", "symbol": "MSFT", "date": DAY, "trade_id": int(before["i"]) - 1,  # type: ignore[call-overload]
         "price": 1.0},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert await _closes(sim, "MSFT") == (closing0, bar_close0)
    # busted once; an open or future session's history cannot be edited
    for bad in (
        {"type": "cancel", "symbol": "MSFT", "date": DAY, "trade_id": before["i"]},
        {"type": "cancel", "symbol": "MSFT", "date": str(sim.state.calendar.next_day(today))},
        {"type": "cancel", "symbol": "MSFT", "date": "2025-12-25"},
    ):
        assert (await sim.post("/sim/publish", bad)).status_code == 400
