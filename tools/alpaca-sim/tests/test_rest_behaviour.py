"""REST behaviour: rate limits and headers, injected faults, determinism, halted symbols."""

from __future__ import annotations

import httpx

from .conftest import KEY_HEADERS, Sim, SimFactory

BARS = {"symbols": "AAPL,MSFT", "timeframe": "1Day", "start": "2024-01-01", "end": "2024-12-31"}


async def test_rate_limit_headers_and_429(make_sim: SimFactory) -> None:
    sim = await make_sim(rest_rate_limit=3)
    statuses = []
    for _ in range(4):
        r = await sim.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
        statuses.append(r.status_code)
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert int(r.headers["X-RateLimit-Reset"]) > 0
    assert statuses == [200, 200, 200, 429]
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json()["code"] == 42910000


async def test_injected_rest_status_then_recovery(sim: Sim) -> None:
    await sim.post("/sim/faults", {"rest_status": 503, "count": 2})
    codes = [(await sim.get("/v2/clock")).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert (await sim.get("/sim/state")).json()["rest_calls"]["GET /v2/clock"] == 3


async def test_unauthenticated_request_is_401(sim: Sim) -> None:
    r = await sim.get("/v2/stocks/bars", params=BARS, headers={"APCA-API-KEY-ID": "sim-key"})
    assert r.status_code == 401
    assert set(r.json()) == {"code", "message"}


async def test_same_seed_same_history_other_seed_other_history(make_sim: SimFactory) -> None:
    a, b, c = await make_sim(seed=7), await make_sim(seed=7), await make_sim(seed=8)
    params = BARS | {
        "timeframe": "1Min",
        "start": "2024-03-15T14:00:00Z",
        "end": "2024-03-15T15:00:00Z",
    }
    bodies = [(await s.get("/v2/stocks/bars", params=params)).json() for s in (a, b, c)]
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]
    trades = [
        (
            await s.get(
                "/v2/stocks/trades",
                params={
                    "symbols": "AAPL",
                    "start": "2024-03-15T14:00:00Z",
                    "end": "2024-03-15T14:01:00Z",
                },
            )
        ).json()
        for s in (a, b)
    ]
    assert trades[0] == trades[1]
    assert trades[0]["trades"]["AAPL"][0]["t"].endswith("Z")


async def test_daily_close_is_stable_across_requests_and_batches(sim: Sim) -> None:
    symbols = [f"S{i:04d}" for i in range(1200)]
    one = (await sim.get("/v2/stocks/bars", params=BARS | {"symbols": "AAPL"})).json()
    many = (
        await sim.get(
            "/v2/stocks/bars",
            params=BARS
            | {
                "symbols": ",".join(["AAPL", *symbols]),
                "start": "2024-06-03",
                "end": "2024-06-03",
                "limit": 10000,
            },
        )
    ).json()
    assert len(many["bars"]) == 1201
    june3 = next(b for b in one["bars"]["AAPL"] if b["t"].startswith("2024-06-03"))
    assert many["bars"]["AAPL"] == [june3]


async def test_halted_symbols_have_no_prints(make_sim: SimFactory) -> None:
    sim = await make_sim(halted="MSFT@2024-06-03")
    params = BARS | {"symbols": "AAPL,MSFT,HALTCO", "start": "2024-06-03", "end": "2024-06-04"}
    body = (await sim.get("/v2/stocks/bars", params=params)).json()
    assert [b["t"][:10] for b in body["bars"]["MSFT"]] == ["2024-06-04"]
    assert "HALTCO" not in body["bars"]
    assert len(body["bars"]["AAPL"]) == 2


async def test_calendar_holidays_and_half_days(sim: Sim) -> None:
    r = await sim.get("/v2/calendar", params={"start": "2024-01-01", "end": "2027-12-31"})
    days = {d["date"]: d for d in r.json()}
    for holiday in [
        "2024-03-29",
        "2024-07-04",
        "2024-11-28",
        "2024-12-25",
        "2025-01-09",
        "2025-04-18",
        "2026-07-03",
        "2026-11-26",
        "2027-03-26",
        "2027-06-18",
        "2027-07-05",
        "2027-12-24",
    ]:
        assert holiday not in days, holiday
    for half in [
        "2024-07-03",
        "2024-11-29",
        "2024-12-24",
        "2025-07-03",
        "2025-11-28",
        "2025-12-24",
        "2026-11-27",
        "2026-12-24",
        "2027-11-26",
    ]:
        assert days[half]["close"] == "13:00", half
    assert days["2024-12-23"]["close"] == "16:00"


async def test_extra_holiday_setting(make_sim: SimFactory) -> None:
    sim = await make_sim(extra_holidays="2024-06-03", extra_half_days="2024-06-04")
    r = await sim.get("/v2/calendar", params={"start": "2024-06-03", "end": "2024-06-04"})
    assert r.json() == [
        {
            "date": "2024-06-04",
            "open": "09:30",
            "close": "13:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2024-06-05",
        }
    ]


async def test_health_ready_metrics(sim: Sim) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        await http.get("/v2/clock", headers=KEY_HEADERS)
        metrics = (await http.get("/metrics")).text
    assert "alpaca_sim_rest_requests_total" in metrics
