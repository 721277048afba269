"""The settle is the official close, from the right tape (issue 11, point 6), against alpaca-sim.

The sim's closing auction (condition `M`) sits a few basis points off the daily bar's close, so
a settle that took the bar instead of the auction shows; `NOAUC*` symbols have no auction.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from eod_settler.adapters.alpaca import AlpacaCredentials, AlpacaRest
from eod_settler.metrics import Metrics
from eod_settler.ratelimit import TokenBucket
from eod_settler.runtime import Deps, Runtime
from eod_settler.scheduler import Scheduler
from nats.js.api import KeyValueConfig
from pydantic import SecretStr
from raxx_contracts import HeldOptionContract, encode, encode_symbol, subjects, utc_now
from raxx_service_kit.clock import ManualClock, SystemClock

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_helpers import Consumer, make_settings, stream_count

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
D1 = dt.date(2025, 12, 23)
HEADERS = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}
BASIC_FEEDS = "iex,delayed_sip,indicative"  # no SIP entitlement: recent SIP answers 403


def _get(sim: AlpacaSim, path: str, **params: Any) -> Any:
    r = httpx.get(f"{sim.url}{path}", params=params, headers=HEADERS, timeout=30)
    r.raise_for_status()
    return r.json()


def sim_closes(sim: AlpacaSim, symbol: str, day: dt.date) -> tuple[Decimal | None, Decimal]:
    """(official closing auction price or None, SIP daily bar close) straight from the sim."""
    nxt = (day + dt.timedelta(days=1)).isoformat()
    auctions = _get(
        sim, "/v2/stocks/auctions", symbols=symbol, start=day.isoformat(), end=nxt, feed="sip"
    )["auctions"].get(symbol, [])
    official = [a["p"] for d in auctions if d["d"] == day.isoformat() for a in d["c"]]
    assert all(a["c"] == "M" for d in auctions for a in d["c"])
    bars = _get(
        sim, "/v2/stocks/bars", symbols=symbol, timeframe="1Day", start=day.isoformat(),
        end=nxt, feed="sip", adjustment="raw",
    )["bars"][symbol]  # fmt: skip
    auction = Decimal(str(official[-1])) if official else None
    return auction, Decimal(str(bars[0]["c"]))


async def test_auction_preferred_fallback_labelled_and_sip_on_a_basic_key(
    own_nats: str, postgres_dsn: str, alpaca_sim_factory: Any
) -> None:
    sim = alpaca_sim_factory(env={"SIM_FEEDS": BASIC_FEEDS, "SIM_NO_AUCTION": "MSFT"})
    syms = ["AAPL", "MSFT", "NOAUCX", "BRK.B"]
    settings = make_settings(own_nats, postgres_dsn, sim.url, symbols=syms)
    # A settle run 20 minutes after the close: the window ends 15 minutes before `now`.
    clock = ManualClock(dt.datetime(2025, 12, 23, 16, 20, tzinfo=NY))
    rt = await Runtime.open(settings, Metrics(), Deps(clock=clock))
    try:
        report = await rt.settler.run(D1)
        rows = {r["symbol"]: r for r in await rt.store.settles_for_date(D1)}
    finally:
        await rt.close()
    assert report.count == len(syms)
    assert report.sources == {"auction/sip": 2, "daily_bar/sip": 2}
    mbt = Consumer(own_nats)
    await mbt.ensure()
    await mbt.consume()
    by = {s.symbol: s for s in mbt.seen.settles}
    for sym in ("AAPL", "BRK.B"):
        auction, bar = sim_closes(sim, sym, D1)
        assert auction is not None
        assert auction != bar  # the sim keeps them apart on purpose
        assert (by[sym].source, by[sym].feed, by[sym].price) == ("auction", "sip", auction)
    for sym in ("MSFT", "NOAUCX"):
        auction, bar = sim_closes(sim, sym, D1)
        assert auction is None
        assert (by[sym].source, by[sym].feed, by[sym].price) == ("daily_bar", "sip", bar)
    assert rows["AAPL"]["feed"] == "sip"
    assert rows["MSFT"]["source"] == "daily_bar"


async def test_run_soon_after_the_close_reads_sip_only_up_to_15_minutes_ago(
    own_nats: str, postgres_dsn: str, alpaca_sim_factory: Any
) -> None:
    """A run 5 minutes after the close (lag lowered) asks SIP for a window ending 15 minutes
    back, so the 16:00 auction print is not in it yet: the daily bar, labelled, on SIP."""
    sim = alpaca_sim_factory(env={"SIM_FEEDS": BASIC_FEEDS})
    today = dt.datetime.now(NY).date()
    cal = _get(
        sim, "/v2/calendar", start=(today - dt.timedelta(days=10)).isoformat(),
        end=today.isoformat(),
    )  # fmt: skip
    now = dt.datetime.now(NY)
    closed = [
        dt.datetime.combine(dt.date.fromisoformat(c["date"]), dt.time.fromisoformat(c["close"]), NY)
        for c in cal
    ]
    close = max(c for c in closed if c <= now)
    settings = make_settings(
        own_nats, postgres_dsn, sim.url, symbols=["AAPL"], settle_lag_seconds=300.0
    )
    clock = ManualClock(close + dt.timedelta(minutes=5))
    rt = await Runtime.open(settings, Metrics(), Deps(clock=clock))
    try:
        report = await rt.settler.run(close.date())
    finally:
        await rt.close()
    assert report.count == 1
    assert not report.missing
    mbt = Consumer(own_nats)
    await mbt.ensure()
    await mbt.consume()
    (s,) = mbt.seen.settles
    assert s.feed == "sip"
    assert s.source == "daily_bar"  # the auction at 16:00 is not yet 15 minutes old


async def test_next_morning_reread_makes_revision_2_exactly_once(
    own_nats: str, postgres_dsn: str, alpaca_sim_factory: Any
) -> None:
    sim = alpaca_sim_factory()
    syms = ["AAPL", "MSFT"]
    settings = make_settings(
        own_nats, postgres_dsn, sim.url, symbols=syms, catchup_sessions=1,
        scheduler_poll_seconds=1.0,
    )  # fmt: skip
    clock = ManualClock(dt.datetime(2025, 12, 23, 16, 20, tzinfo=NY))
    mbt = Consumer(own_nats)
    rt = await Runtime.open(settings, Metrics(), Deps(clock=clock))
    try:
        await mbt.ensure()
        sched = Scheduler(settings, rt.settler, rt.store, clock, rt.metrics)
        await sched.tick()  # the evening run: revision 1
        assert await rt.store.is_complete(D1)
        auction, _bar = sim_closes(sim, "AAPL", D1)
        assert auction is not None
        corrected = auction + Decimal("0.37")
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{sim.url}/sim/late_close",
                json={"symbol": "AAPL", "date": D1.isoformat(), "close": str(corrected)},
            )
        assert r.status_code == 200, r.text
        await sched.tick()  # still the evening: no re-read yet
        await mbt.consume()
        assert sorted(mbt.seen.keys()) == [(D1.isoformat(), s, 1) for s in syms]
        clock.set(dt.datetime(2025, 12, 24, 7, 5, tzinfo=NY))
        await sched.tick()  # the morning after: the re-read finds the corrected close
        after_reread = await stream_count(own_nats)
        # A second scheduler (a restart, or a replica) and a manual re-run: no revision 3.
        again = Scheduler(settings, rt.settler, rt.store, clock, rt.metrics)
        await again.tick()
        rerun = await rt.settler.run(D1)
        assert (rerun.written, rerun.unchanged) == (0, len(syms))
        assert await stream_count(own_nats) == after_reread
    finally:
        await rt.close()
    await mbt.consume()
    aapl = [s for s in mbt.seen.settles if s.symbol == "AAPL"]
    assert [s.revision for s in aapl] == [1, 2]
    assert aapl[1].price == corrected
    assert (aapl[1].source, aapl[1].feed) == ("auction", "sip")
    assert [s.revision for s in mbt.seen.settles if s.symbol == "MSFT"] == [1]
    assert [d.revised for d in mbt.seen.done] == [0, 1]


def _recent_expiration(sim: AlpacaSim, underlying: str) -> tuple[dict[str, Any], dt.date]:
    """A contract of `underlying` that expired on a recent session (the sim's real today)."""
    today = dt.datetime.now(NY).date()
    listed = _get(
        sim, "/v2/options/contracts", underlying_symbols=underlying, status="inactive",
        expiration_date_gte=(today - dt.timedelta(days=14)).isoformat(), limit=10_000,
    )["option_contracts"]  # fmt: skip
    assert listed
    assert all(c["status"] == "inactive" for c in listed)
    last = max(c["expiration_date"] for c in listed)
    same_day = [c for c in listed if c["expiration_date"] == last]
    return same_day, dt.date.fromisoformat(last)  # type: ignore[return-value]


async def test_contract_expired_that_day_settles_at_intrinsic_from_the_underlying_settle(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    contracts, expiry = _recent_expiration(alpaca_sim, "AAPL")
    auction, _bar = sim_closes(alpaca_sim, "AAPL", expiry)
    assert auction is not None
    itm_call = next(
        c for c in contracts if c["type"] == "call" and Decimal(c["strike_price"]) < auction
    )
    otm_put = next(
        c for c in contracts if c["type"] == "put" and Decimal(c["strike_price"]) < auction
    )
    settings = make_settings(own_nats, postgres_dsn, alpaca_sim.url, symbols=["AAPL"])
    rt = await Runtime.open(settings, Metrics(), Deps(clock=SystemClock()))
    try:
        kv = await rt.js.create_key_value(KeyValueConfig(bucket=subjects.HELD_OPTIONS_BUCKET))
        for c in (itm_call, otm_put):
            entry = HeldOptionContract(symbol=c["symbol"], timestamp=utc_now())
            await kv.put(encode_symbol(c["symbol"]), encode(entry))
        report = await rt.settler.run(expiry)  # a catch-up run: the contracts are gone now
    finally:
        await rt.close()
    assert report.count == 3
    assert not report.missing
    mbt = Consumer(own_nats)
    await mbt.ensure()
    await mbt.consume()
    by = {s.symbol: s for s in mbt.seen.settles}
    assert (by["AAPL"].source, by["AAPL"].price) == ("auction", auction)
    call, put = by[itm_call["symbol"]], by[otm_put["symbol"]]
    assert (call.source, call.feed, call.stale) == ("intrinsic", "sip", False)
    assert call.price == auction - Decimal(itm_call["strike_price"])
    assert (put.source, put.price) == ("intrinsic", Decimal(0))  # expired worthless, said so


async def test_catch_up_finds_a_contract_that_has_since_expired(
    alpaca_sim: AlpacaSim,
) -> None:
    """The contract lookup covers inactive (expired) contracts, not only today's chain."""
    contracts, expiry = _recent_expiration(alpaca_sim, "MSFT")
    held = contracts[0]
    assert held["close_price_date"] == expiry.isoformat()
    creds = AlpacaCredentials(SecretStr("sim-key"), SecretStr("sim-secret"))
    rest = AlpacaRest(creds, alpaca_sim.url, alpaca_sim.url, TokenBucket(600.0, 1), Metrics(), NY)
    closes = await rest.contract_closes(expiry, [held["symbol"]])
    assert closes == {held["symbol"]: Decimal(held["close_price"])}
