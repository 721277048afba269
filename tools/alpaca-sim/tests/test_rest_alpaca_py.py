"""Fidelity: alpaca-py's historical and trading clients (sync: run in threads) against the sim."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
from alpaca.data.enums import DataFeed
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import (
    OptionChainRequest,
    StockBarsRequest,
    StockLatestQuoteRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOptionContractsRequest,
    MarketOrderRequest,
)

from .conftest import Sim, SimFactory

REDIRECT = "http://127.0.0.1:8083/v1/broker/alpaca/callback"
HALF_DAY = datetime(2024, 11, 29, tzinfo=UTC)  # closes 13:00 ET: 210 minute bars


def bars_request(symbols: list[str], tf: TimeFrame, **kw: object) -> StockBarsRequest:
    return StockBarsRequest(
        symbol_or_symbols=symbols,
        timeframe=tf,
        start=HALF_DAY,
        end=datetime(2024, 11, 30, tzinfo=UTC),
        feed=DataFeed.IEX,
        **kw,
    )


async def test_bars_follow_next_page_token_across_pages(make_sim: SimFactory) -> None:
    sim = await make_sim(page_size_cap=100)
    client = StockHistoricalDataClient("sim-key", "sim-secret", url_override=sim.url)
    barset = await asyncio.to_thread(
        client.get_stock_bars, bars_request(["MSFT", "AAPL"], TimeFrame.Minute)
    )
    assert len(barset.data["AAPL"]) == 210
    assert len(barset.data["MSFT"]) == 210
    assert sim.state.rest_calls["GET /v2/stocks/bars"] == 5  # 420 bars, 100 per page
    times = [b.timestamp for b in barset.data["AAPL"]]
    assert times == sorted(times)
    assert len(set(times)) == 210
    # limit applies to the total across symbols, sorted by symbol then time.
    limited = await asyncio.to_thread(
        client.get_stock_bars, bars_request(["MSFT", "AAPL"], TimeFrame.Minute, limit=250)
    )
    assert len(limited.data["AAPL"]) == 210
    assert len(limited.data["MSFT"]) == 40
    # The day's minute bars aggregate exactly to its daily bar.
    daily = await asyncio.to_thread(client.get_stock_bars, bars_request(["AAPL"], TimeFrame.Day))
    day = daily.data["AAPL"][0]
    minutes = barset.data["AAPL"]
    assert day.open == minutes[0].open
    assert day.close == minutes[-1].close
    assert day.high == max(b.high for b in minutes)
    assert day.low == min(b.low for b in minutes)
    assert day.volume == sum(b.volume for b in minutes)


async def test_latest_quote_and_snapshot(sim: Sim) -> None:
    client = StockHistoricalDataClient("sim-key", "sim-secret", url_override=sim.url)
    quotes = await asyncio.to_thread(
        client.get_stock_latest_quote, StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "SPY"])
    )
    assert set(quotes) == {"AAPL", "SPY"}
    assert quotes["AAPL"].ask_price > quotes["AAPL"].bid_price > 0
    snaps = await asyncio.to_thread(
        client.get_stock_snapshot, StockSnapshotRequest(symbol_or_symbols=["AAPL", "MSFT"])
    )
    snap = snaps["MSFT"]
    assert snap.latest_trade is not None
    assert snap.latest_quote is not None
    assert snap.daily_bar is not None
    assert snap.previous_daily_bar is not None
    assert snap.previous_daily_bar.timestamp < snap.daily_bar.timestamp


async def test_option_chain_pages_and_carries_greeks(make_sim: SimFactory) -> None:
    sim = await make_sim()
    client = OptionHistoricalDataClient("sim-key", "sim-secret", url_override=sim.url)
    chain = await asyncio.to_thread(
        client.get_option_chain, OptionChainRequest(underlying_symbol="AAPL")
    )
    assert len(chain) > 100  # more than one default page
    assert sim.state.rest_calls["GET /v1beta1/options/snapshots/{underlying}"] == 1
    snap = next(iter(chain.values()))
    assert snap.greeks is not None
    assert snap.implied_volatility is not None
    assert snap.latest_quote is not None
    assert snap.latest_quote.ask_price >= snap.latest_quote.bid_price
    raw = await sim.get("/v1beta1/options/snapshots/AAPL", params={"limit": 50, "type": "call"})
    body = raw.json()
    assert len(body["snapshots"]) == 50
    assert body["next_page_token"]
    nxt = await sim.get(
        "/v1beta1/options/snapshots/AAPL",
        params={"limit": 50, "type": "call", "page_token": body["next_page_token"]},
    )
    assert not set(nxt.json()["snapshots"]) & set(body["snapshots"])


def trading_client(sim: Sim, token: str | None = None) -> TradingClient:
    if token:
        return TradingClient(oauth_token=token, url_override=sim.url)
    return TradingClient("sim-key", "sim-secret", url_override=sim.url)


async def test_trading_account_orders_clock_calendar_contracts(sim: Sim) -> None:
    client = trading_client(sim)
    account = await asyncio.to_thread(client.get_account)
    assert float(account.cash or 0) == 100_000
    order = await asyncio.to_thread(
        client.submit_order,
        MarketOrderRequest(
            symbol="AAPL",
            qty=10,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            client_order_id="coid-1",
        ),
    )
    assert order.status == OrderStatus.FILLED
    again = await sim.post(
        "/v2/orders",
        {
            "symbol": "AAPL",
            "qty": "1",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "coid-1",
        },
    )
    assert again.status_code == 422
    assert again.json()["message"] == "client_order_id must be unique"
    by_coid = await asyncio.to_thread(client.get_order_by_client_id, "coid-1")
    assert by_coid.id == order.id
    positions = await asyncio.to_thread(client.get_all_positions)
    assert [(p.symbol, p.qty) for p in positions] == [("AAPL", "10")]
    account = await asyncio.to_thread(client.get_account)
    assert float(account.cash or 0) < 100_000
    clock = await asyncio.to_thread(client.get_clock)
    assert clock.next_close > clock.next_open or clock.is_open
    cal = await asyncio.to_thread(
        client.get_calendar, GetCalendarRequest(start=date(2024, 11, 27), end=date(2024, 12, 2))
    )
    assert [c.date for c in cal] == [date(2024, 11, 27), date(2024, 11, 29), date(2024, 12, 2)]
    assert cal[1].close.hour == 13
    contracts = await asyncio.to_thread(
        client.get_option_contracts, GetOptionContractsRequest(underlying_symbols=["AAPL"], limit=5)
    )
    assert len(contracts.option_contracts or []) == 5
    one = (contracts.option_contracts or [])[0]
    assert one.close_price is not None
    assert one.close_price_date is not None
    single = await asyncio.to_thread(client.get_option_contract, one.symbol)
    assert single.id == one.id


async def _oauth_token(sim: Sim, verifier: str | None = None) -> str:
    params = {
        "response_type": "code",
        "client_id": "sim-client",
        "redirect_uri": REDIRECT,
        "state": "xyz",
        "scope": "account:write trading",
        "env": "paper",
    }
    if verifier:
        digest = hashlib.sha256(verifier.encode()).digest()
        params |= {
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.get("/oauth/authorize", params=params)
        assert r.status_code == 302
        loc = urlsplit(r.headers["Location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
        q = parse_qs(loc.query)
        assert q["state"] == ["xyz"]
        form = {
            "grant_type": "authorization_code",
            "code": q["code"][0],
            "client_id": "sim-client",
            "client_secret": "sim-client-secret",
            "redirect_uri": REDIRECT,
        }
        if verifier:
            bad = await http.post("/oauth/token", data=form | {"code_verifier": "wrong"})
            assert bad.status_code == 400
            form["code_verifier"] = verifier
        tok = await http.post("/oauth/token", data=form)
        assert tok.status_code == 200
        body = tok.json()
        assert set(body) == {"access_token", "token_type", "scope"}
        assert body["token_type"] == "bearer"
        reuse = await http.post("/oauth/token", data=form)
        assert reuse.status_code == 400  # a code works once
        return str(body["access_token"])


async def test_oauth_flow_gives_each_user_an_own_account(sim: Sim) -> None:
    token_a = await _oauth_token(sim)
    token_b = await _oauth_token(sim, verifier="v" * 50)
    a, b = trading_client(sim, token_a), trading_client(sim, token_b)
    acct_a = await asyncio.to_thread(a.get_account)
    acct_b = await asyncio.to_thread(b.get_account)
    assert acct_a.id != acct_b.id
    await asyncio.to_thread(
        a.submit_order,
        MarketOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY),
    )
    assert len(await asyncio.to_thread(a.get_all_positions)) == 1
    assert await asyncio.to_thread(b.get_all_positions) == []
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post(
            "/oauth/revoke",
            data={
                "token": token_a,
                "client_id": "sim-client",
                "client_secret": "sim-client-secret",
            },
        )
        assert r.status_code == 200
        after = await http.get("/v2/account", headers={"Authorization": f"Bearer {token_a}"})
    assert after.status_code == 401


async def test_oauth_authorize_rejects_unknown_client_and_redirect(sim: Sim) -> None:
    base = {"response_type": "code", "client_id": "sim-client", "redirect_uri": REDIRECT}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        bad_client = await http.get("/oauth/authorize", params=base | {"client_id": "other"})
        bad_redirect = await http.get(
            "/oauth/authorize", params=base | {"redirect_uri": REDIRECT + "x"}
        )
    assert bad_client.status_code == 400
    assert bad_redirect.status_code == 400
    assert "Location" not in bad_redirect.headers
