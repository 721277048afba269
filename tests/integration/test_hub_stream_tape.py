"""Issue 11 against real servers (nats-server, OpenBao, alpaca-sim): corrections, cancels,
LULD and imbalances reach the rt and delayed subjects as contract models; one-sided IEX quotes
are null on the empty side; Alpaca's refusals become typed rejections; a multi-symbol gap is
backfilled page by page for every symbol; a closed market causes no reconnect churn."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest
import pytest_asyncio
from market_data_hub.adapters.market_clock import MarketClock
from market_data_hub.adapters.vault import KeySource
from market_data_hub.app import Deps
from market_data_hub.settings import Settings
from nats.aio.client import Client
from nats.aio.msg import Msg
from raxx_contracts import (
    AssetClass,
    Bar,
    Channel,
    Imbalance,
    InterestReply,
    InterestRequest,
    Luld,
    Path,
    Quote,
    Trade,
    TradeCancel,
    TradeCorrection,
    decode,
    encode,
    subjects,
)

from tests.support.hub import local_settings, request_interest, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")


@pytest_asyncio.fixture
async def nc(own_nats: str) -> AsyncIterator[Client]:
    c = await nats.connect(own_nats)
    yield c
    await c.drain()


def _settings(own_nats: str, vault: Any, sim: Any, **kw: Any) -> Settings:
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False, **kw
    )
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    return s


async def _post(sim: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{sim.url}{path}", json=body)
        r.raise_for_status()
        return dict(r.json())


SIM_AUTH = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}


async def _get(sim: Any, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{sim.url}{path}", headers=SIM_AUTH)
        r.raise_for_status()
        return dict(r.json())


async def interest(nc: Client, user: str = "u1", **kw: Any) -> InterestReply:
    req = InterestRequest(consumer_id=kw.pop("consumer_id", "c1"), **kw)
    msg = await request_interest(nc, encode(req), user=user, tier="pro_plus")
    return decode(InterestReply, msg.data)


async def eventually(pred: Callable[[], Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def _metrics(app: Any) -> dict[str, float]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        text = (await c.get("/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _subs(state: dict[str, Any]) -> dict[str, list[str]]:
    conns = [c for c in state["connections"] if c["endpoint"] == "/v2/iex" and c["authenticated"]]
    return dict(conns[0]["subscriptions"]) if conns else {}


async def test_corrections_cancels_lulds_imbalances_reach_rt_and_delayed_as_models(
    own_nats: str, vault: Any, alpaca_sim_factory: Callable[..., Any], nc: Client
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "0"})
    settings = _settings(own_nats, vault, sim)
    got: dict[str, list[bytes]] = {}

    async def on_msg(m: Msg) -> None:
        got.setdefault(m.subject, []).append(m.data)

    await nc.subscribe("md.>", cb=on_msg)
    async with running_hub(settings):
        r = await interest(nc, symbols=("AAPL",), channels=(
            Channel.TRADES, Channel.QUOTES, Channel.LULDS, Channel.IMBALANCES,
        ))  # fmt: skip
        assert r.accepted == ("AAPL",), r
        await _post(sim, "/sim/publish", {"type": "trade", "symbol": "AAPL", "price": 200.0})
        await _post(sim, "/sim/publish", {"type": "trade", "symbol": "AAPL", "price": 201.0})
        # the last print is corrected, then the first one busted
        fix = {"type": "correction", "symbol": "AAPL", "price": 200.5, "size": 300}
        await _post(sim, "/sim/publish", fix)
        trades = subjects.rt(AssetClass.STOCKS, Channel.TRADES, "AAPL")
        await eventually(lambda: len(got.get(trades, ())) == 2)
        first_id = decode(Trade, got[trades][0]).trade_id
        await _post(sim, "/sim/publish", {"type": "cancel", "symbol": "AAPL", "trade_id": first_id})
        await _post(sim, "/sim/publish", {"type": "luld", "symbol": "AAPL", "up": 210, "down": 190})
        await _post(sim, "/sim/publish", {"type": "imbalance", "symbol": "AAPL", "price": 200.25})
        expect: dict[Channel, type[Any]] = {
            Channel.CORRECTIONS: TradeCorrection,
            Channel.CANCELS: TradeCancel,
            Channel.LULDS: Luld,
            Channel.IMBALANCES: Imbalance,
        }
        for path in (subjects.rt, subjects.delayed):  # the delay line carries them too
            for ch in expect:
                subj = path(AssetClass.STOCKS, ch, "AAPL")
                await eventually(lambda s=subj: got.get(s))
        corr = decode(TradeCorrection, got[subjects.rt(AssetClass.STOCKS, Channel.CORRECTIONS,
                                                       "AAPL")][0])  # fmt: skip
        assert (str(corr.original_price), str(corr.corrected_price), corr.corrected_size) == (
            "201", "200.5", 300,
        )  # fmt: skip
        cancel = decode(TradeCancel, got[subjects.delayed(AssetClass.STOCKS, Channel.CANCELS,
                                                          "AAPL")][0])  # fmt: skip
        assert (cancel.trade_id, str(cancel.price)) == (first_id, "200")
        luld = decode(Luld, got[subjects.rt(AssetClass.STOCKS, Channel.LULDS, "AAPL")][0])
        assert (str(luld.limit_up_price), str(luld.limit_down_price)) == ("210", "190")


async def test_one_sided_iex_quote_has_a_null_side(
    own_nats: str, vault: Any, alpaca_sim_factory: Callable[..., Any], nc: Client
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "0"})
    settings = _settings(own_nats, vault, sim)
    quotes: list[Quote] = []

    async def on_msg(m: Msg) -> None:
        quotes.append(decode(Quote, m.data))

    await nc.subscribe(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "MSFT"), cb=on_msg)
    async with running_hub(settings):
        assert (await interest(nc, symbols=("MSFT",))).accepted == ("MSFT",)
        await _post(sim, "/sim/publish", {"type": "quote", "symbol": "MSFT", "bid": 410.1,
                                          "ask": 0, "bid_size": 200})  # fmt: skip
        await eventually(lambda: quotes)
        q = quotes[0]
        assert (q.ask_price, q.ask_size, q.one_sided) == (None, None, True)
        assert (str(q.bid_price), q.bid_size) == ("410.1", 200)


async def test_alpaca_refusals_are_typed_rejections_never_accepted(
    own_nats: str, vault: Any, alpaca_sim_factory: Callable[..., Any], nc: Client
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "0"})
    settings = _settings(own_nats, vault, sim)
    async with running_hub(settings) as app:
        await _post(sim, "/sim/faults", {"symbol_cap": 1, "refuse_symbols": ["IBM"]})
        r = await interest(nc, symbols=("AAPL", "MSFT"))
        assert r.accepted == ("AAPL",), r  # the hub's cap (30) allows both; Alpaca's does not
        assert [(x.symbol, x.reason) for x in r.rejected] == [("MSFT", "upstream_refused")]
        assert "405" in r.rejected[0].message
        # a symbol Alpaca cannot parse: 400, typed as well
        await _post(sim, "/sim/faults", {"symbol_cap": None})
        r = await interest(nc, user="u2", symbols=("IBM",))
        assert r.accepted == (), r
        assert r.rejected[0].reason == "upstream_refused", r
        assert "400" in r.rejected[0].message
        # renewing does not turn a refusal into an acceptance, and upstream never holds them
        r = await interest(nc, symbols=("AAPL", "MSFT"))
        assert r.accepted == ("AAPL",)
        assert r.rejected[0].symbol == "MSFT"
        subs = _subs(await _get(sim, "/sim/state"))
        assert "MSFT" not in subs["quotes"]
        assert "IBM" not in subs["quotes"]
        m = await _metrics(app)
        assert m['mdh_upstream_refused_symbols_total{asset="stocks",code="405"}'] >= 1
        assert m['mdh_upstream_refused_symbols_total{asset="stocks",code="400"}'] >= 1


class _AlwaysOpen(MarketClock):
    def is_open(self, now_s: float) -> bool | None:
        return True

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_backfill_pages_through_every_symbol_of_a_gap_and_counts_it(
    own_nats: str, vault: Any, alpaca_sim_factory: Callable[..., Any], nc: Client
) -> None:
    # pages of at most 100 bars: one request could never cover five symbols for an hour
    sim = alpaca_sim_factory(env={"SIM_RATE": "0", "SIM_PAGE_SIZE_CAP": "100"})
    settings = _settings(own_nats, vault, sim, backfill_max_seconds=60, watchdog_seconds=600)
    symbols = ("AAPL", "AMZN", "MSFT", "NVDA", "SPY")
    backfilled: dict[str, int] = {}

    async def on_bar(m: Msg) -> None:
        b = decode(Bar, m.data)
        if b.backfill:
            backfilled[b.symbol] = backfilled.get(b.symbol, 0) + 1

    await nc.subscribe(subjects.market_pattern(path=Path.RT, channel=Channel.BARS), cb=on_bar)
    # the gap starts inside the last regular session the simulator has history for
    last_open = await _last_session_hour(sim)
    keys = KeySource(settings.vault)
    deps = Deps(market_clock=_AlwaysOpen(settings.alpaca_trading_url, keys))
    async with running_hub(settings, deps) as app:
        r = await interest(nc, symbols=symbols, channels=(Channel.BARS,))
        assert r.accepted == symbols, r
        hub = app.state.hub
        up = hub.upstreams[0]
        up._gap_from_ns = int(last_open.timestamp() * 1e9)  # the socket went quiet then
        await _post(sim, "/sim/faults", {"drop_connections": True})
        await eventually(lambda: set(backfilled) == set(symbols), timeout=60)
        m = await eventually(_gap_counted(app), timeout=30)
        assert m["mdh_backfill_last_gap_symbols"] == len(symbols)
        assert m["mdh_backfill_pages_total"] >= 3  # followed next_page_token to the end
        assert m["mdh_backfill_last_gap_bars"] == sum(backfilled.values())
        assert min(backfilled.values()) >= 30  # every symbol got its whole hour, not a page


def _gap_counted(app: Any) -> Callable[[], Any]:
    async def check() -> dict[str, float] | None:
        m = await _metrics(app)
        return m if m.get('mdh_backfill_gaps_total{outcome="complete"}') else None

    return check


async def _last_session_hour(sim: Any) -> dt.datetime:
    """75 minutes before the close of the last regular session that has closed, or before
    now when a session is on: a gap the simulator's history has minute bars for."""
    now = dt.datetime.now(NY)
    start = (now.date() - dt.timedelta(days=10)).isoformat()
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{sim.url}/v2/calendar?start={start}&end={now.date()}", headers=SIM_AUTH)
        r.raise_for_status()
        days = r.json()
    for day in reversed(days):
        d = dt.date.fromisoformat(day["date"])
        opens = dt.datetime.combine(d, dt.time.fromisoformat(day["open"]), NY)
        closes = dt.datetime.combine(d, dt.time.fromisoformat(day["close"]), NY)
        if opens + dt.timedelta(minutes=75) < now:
            return min(closes, now) - dt.timedelta(minutes=75)
    raise AssertionError("no recent session on the simulator's calendar")


async def test_no_watchdog_reconnect_and_no_backfill_while_the_market_is_closed(
    own_nats: str, vault: Any, alpaca_sim_factory: Callable[..., Any], nc: Client
) -> None:
    today = dt.datetime.now(NY).date().isoformat()
    # today is a holiday on the simulator's calendar, so its clock says closed at any hour
    sim = alpaca_sim_factory(env={"SIM_RATE": "0", "SIM_EXTRA_HOLIDAYS": today})
    assert (await _get(sim, "/v2/clock"))["is_open"] is False
    settings = _settings(own_nats, vault, sim, watchdog_seconds=2)
    async with running_hub(settings) as app:
        assert (await interest(nc, symbols=("AAPL",))).accepted == ("AAPL",)
        hub = app.state.hub
        await eventually(lambda: hub.market_clock.is_open(time.time()) is False)
        before = (await _get(sim, "/sim/state"))["rest_calls"]
        await asyncio.sleep(7)  # silent well past the 2 s watchdog: normal when closed
        m = await _metrics(app)
        assert m.get('mdh_upstream_reconnects_total{asset="stocks",reason="silent"}', 0) == 0
        assert m['mdh_watchdog_closed_market_skips_total{asset="stocks"}'] >= 1
        # a real drop reconnects, but the gap's backfill waits for the open
        await _post(sim, "/sim/faults", {"drop_connections": True})
        await eventually(lambda: hub.upstreams[0].authenticated and _subs_has(sim, "AAPL"))
        await asyncio.sleep(2)
        after = (await _get(sim, "/sim/state"))["rest_calls"]
        bars = {k: v for k, v in after.items() if "bars" in k}
        assert bars == {k: v for k, v in before.items() if "bars" in k}
        m = await _metrics(app)
        assert m['mdh_backfill_gaps_total{outcome="deferred_closed"}'] >= 1


async def _subs_has(sim: Any, symbol: str) -> bool:
    return symbol in _subs(await _get(sim, "/sim/state")).get("quotes", [])
