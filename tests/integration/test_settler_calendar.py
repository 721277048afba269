"""eod-settler timing, API, interest and options against real servers and alpaca-sim."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest
from eod_settler.app import create_app
from eod_settler.errors import NotYetClosedError
from eod_settler.metrics import Metrics
from eod_settler.runtime import Deps, Runtime
from eod_settler.scheduler import Scheduler
from nats.js.api import KeyValueConfig
from raxx_contracts import (
    AssetClass,
    HeldOptionContract,
    UpstreamHeld,
    encode,
    encode_symbol,
    subjects,
    utc_now,
)
from raxx_service_kit.clock import ManualClock, SystemClock

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_helpers import (
    Consumer,
    make_settings,
    open_runtime,
    stream_count,
)

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
HALF_DAY = dt.date(2025, 12, 24)
D1 = dt.date(2025, 12, 23)


async def test_half_day_settles_at_the_13_00_close_plus_lag(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    settings = make_settings(own_nats, postgres_dsn, alpaca_sim.url, symbols=["AAPL", "MSFT"])
    clock = ManualClock(dt.datetime(2025, 12, 24, 13, 14, tzinfo=NY))
    rt = await Runtime.open(settings, Metrics(), Deps(clock=clock))
    try:
        with pytest.raises(NotYetClosedError):
            await rt.settler.run(HALF_DAY)  # 13:00 close + 900 s lag = 13:15
        clock.set(dt.datetime(2025, 12, 24, 13, 16, tzinfo=NY))
        report = await rt.settler.run(HALF_DAY)
    finally:
        await rt.close()
    assert report.count == 2
    mbt = Consumer(own_nats)
    await mbt.ensure()
    await mbt.consume()
    assert {s.timestamp.isoformat() for s in mbt.seen.settles} == {"2025-12-24T18:00:00+00:00"}
    # The half day's 13:00 closing auction is 16 minutes old: the official close, from SIP.
    assert all((s.source, s.feed) == ("auction", "sip") for s in mbt.seen.settles)


@pytest.mark.parametrize(
    ("date", "code", "words"),
    [
        ("2025-12-25", 3, "not a trading day"),  # Christmas
        ("2025-12-27", 3, "not a trading day"),  # Saturday
        ("2030-01-02", 4, "future"),
    ],
)
def test_cli_refuses_holiday_weekend_and_future_dates(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim, date: str, code: int, words: str
) -> None:
    env = {
        **os.environ, "EOD_NATS_URL": own_nats, "EOD_DATABASE_URL": postgres_dsn,
        "EOD_ALPACA_DATA_URL": alpaca_sim.url, "EOD_ALPACA_TRADING_URL": alpaca_sim.url,
        "EOD_ALPACA_KEY_ID": "sim-key", "EOD_ALPACA_SECRET_KEY": "sim-secret",
        "EOD_SYMBOLS": "AAPL",
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "eod_settler", "run", "--date", date],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr.decode()[-1500:]
    assert words in proc.stderr.decode()
    assert asyncio.run(stream_count(own_nats)) == 0


async def test_api_serves_latest_revisions_and_maps_errors(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    settings = make_settings(own_nats, postgres_dsn, alpaca_sim.url, symbols=["AAPL", "BRK.B"])
    rt = await open_runtime(settings)
    try:
        await rt.settler.run(D1)
    finally:
        await rt.close()
    app = create_app(settings, Deps(clock=SystemClock()), background=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        ok = await http.get("/v1/settles/2025-12-23")
        missing = await http.get("/v1/settles/2025-12-22")
        bad = await http.get("/v1/settles/2025-13-45")
        ready = await http.get("/readyz")
        metrics = await http.get("/metrics")
    assert ok.status_code == 200
    body = ok.json()
    assert body["count"] == 2
    assert {s["symbol"] for s in body["settles"]} == {"AAPL", "BRK.B"}
    assert all(
        (s["revision"], s["source"], s["feed"]) == (1, "auction", "sip") for s in body["settles"]
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert bad.status_code == 400
    assert bad.json()["error"] == "bad_date"
    assert ready.status_code == 200
    assert "eod_outbox_depth" in metrics.text


async def hold_upstream(nats_url: str, asset: AssetClass, *symbols: str) -> None:
    """Write the hub leader's acknowledged upstream set, as market-data-hub does."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().create_key_value(
            KeyValueConfig(bucket=subjects.HUB_INTEREST_BUCKET, history=1)
        )
        held = UpstreamHeld(held=symbols)
        await kv.put(subjects.upstream_held_key(asset), held.model_dump_json().encode())
    finally:
        await nc.close()


async def recorded_symbols(rt: Runtime, date: dt.date, want: int) -> set[str]:
    """The date's universe once it has `want` symbols (the recorder polls every 0.1 s)."""
    recorded: set[str] = set()
    for _ in range(100):
        recorded = {t.symbol for t in await rt.store.universe(date)}
        if len(recorded) >= want:
            break
        await asyncio.sleep(0.1)
    return recorded


async def test_symbols_the_hub_holds_upstream_are_recorded_and_settled(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    clock = ManualClock(dt.datetime(2025, 12, 23, 11, 0, tzinfo=NY))
    settings = make_settings(
        own_nats, postgres_dsn, alpaca_sim.url, catchup_sessions=0, interest_flush_seconds=0.1
    )
    app = create_app(settings, Deps(clock=clock))
    async with app.router.lifespan_context(app):
        await hold_upstream(own_nats, AssetClass.STOCKS, "NVDA", "AMD")
        rt: Runtime = app.state.runtime
        assert await recorded_symbols(rt, D1, 2) == {"NVDA", "AMD"}
        clock.set(dt.datetime(2025, 12, 23, 17, 0, tzinfo=NY))
        report = await rt.settler.run(D1)
    assert report.count == 2


async def test_scheduler_settles_the_due_session_once_and_clears_late_flag(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    clock = ManualClock(dt.datetime(2025, 12, 23, 23, 0, tzinfo=NY))
    settings = make_settings(
        own_nats, postgres_dsn, alpaca_sim.url, symbols=["AAPL"], catchup_sessions=1,
        late_grace_seconds=1800,
    )  # fmt: skip
    metrics = Metrics()
    rt = await Runtime.open(settings, metrics, Deps(clock=clock))
    try:
        sched = Scheduler(settings, rt.settler, rt.store, clock, metrics)
        due = [s for s in await rt.settler.sessions(D1, D1)]
        await sched.update_late(clock.now(), due)
        assert metrics.batch_late._value.get() == 1
        await sched.tick()
        assert await rt.store.is_complete(D1)
        assert metrics.batch_late._value.get() == 0
        before = await stream_count(own_nats)
        await sched.tick()
        assert await stream_count(own_nats) == before
    finally:
        await rt.close()


async def test_held_option_settles_at_the_contract_close(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    today = dt.datetime.now(NY).date()
    headers = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}
    async with httpx.AsyncClient(base_url=alpaca_sim.url, headers=headers) as http:
        cal = (
            await http.get(
                "/v2/calendar",
                params={"start": (today - dt.timedelta(days=10)).isoformat(),
                        "end": (today - dt.timedelta(days=1)).isoformat()},
            )
        ).json()  # fmt: skip
        prev = dt.date.fromisoformat(cal[-1]["date"])
        contracts = (
            await http.get(
                "/v2/options/contracts",
                params={"underlying_symbols": "AAPL", "expiration_date_gte": today.isoformat(),
                        "limit": 5},
            )
        ).json()["option_contracts"]  # fmt: skip
    held = next(c for c in contracts if c["close_price_date"] == prev.isoformat())
    settings = make_settings(own_nats, postgres_dsn, alpaca_sim.url)
    rt = await Runtime.open(settings, Metrics(), Deps(clock=SystemClock()))
    try:
        kv = await rt.js.create_key_value(KeyValueConfig(bucket=subjects.HELD_OPTIONS_BUCKET))
        entry = HeldOptionContract(symbol=held["symbol"], timestamp=utc_now())
        await kv.put(encode_symbol(held["symbol"]), encode(entry))
        report = await rt.settler.run(prev)
    finally:
        await rt.close()
    assert report.count == 1
    mbt = Consumer(own_nats)
    await mbt.ensure()
    await mbt.consume()
    (s,) = mbt.seen.settles
    assert s.symbol == held["symbol"]
    assert s.source == "contract_close"
    assert str(s.price) == held["close_price"]
    assert s.asset_class == "options"
