"""Plan modes (`SIM_PLAN`): Basic's feeds, caps, REST rights; Algo Trader Plus; explicit wins."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from alpaca_sim.settings import Settings

from .conftest import RawFactory, SimFactory
from .test_stream_protocol import authed, closed, connected, error


def test_plan_sets_defaults_and_explicit_settings_win() -> None:
    basic = Settings(plan="basic")
    assert basic.feeds == ["iex", "delayed_sip", "test", "indicative"]
    assert (basic.symbol_cap, basic.option_quote_cap, basic.allow_star) == (30, 200, False)
    assert basic.rest_rate_limit == 200
    atp = Settings(plan="algo_trader_plus")
    assert "sip" in atp.feeds
    assert "opra" in atp.feeds
    assert (atp.symbol_cap, atp.option_quote_cap, atp.rest_rate_limit) == (0, 1000, 10_000)
    mixed = Settings(plan="basic", symbol_cap=5, rest_rate_limit=0)
    assert (mixed.symbol_cap, mixed.rest_rate_limit, mixed.option_quote_cap) == (5, 0, 200)
    assert Settings().feeds[:2] == ["iex", "sip"]
    assert Settings().symbol_cap == 0


async def test_basic_streams(make_sim: SimFactory, raw: RawFactory) -> None:
    sim = await make_sim(plan="basic", rest_rate_limit=0)
    for path in ("/v2/sip", "/v1beta1/opra"):
        client = await connected(raw, sim, path, mp=True)
        assert await client.auth() == [error(409)]
        assert await closed(client)
    assert sim.state.stream_connects["/v2/sip"] == 1
    delayed = await authed(raw, sim, "/v2/delayed_sip")  # accepted on every plan
    assert delayed is not None
    client = await authed(raw, sim, "/v2/iex")
    symbols = [f"S{i}" for i in range(31)]
    await client.send({"action": "subscribe", "trades": symbols[:30]})
    await client.recv_until(lambda m: m["T"] == "subscription")
    await client.send({"action": "subscribe", "quotes": symbols[30:]})
    assert await client.recv_until(lambda m: m["T"] == "error") == error(405)
    await client.send({"action": "subscribe", "bars": ["*"]})
    assert await client.recv_until(lambda m: m["T"] == "error") == error(409)
    options = await authed(raw, sim, "/v1beta1/indicative", mp=True)
    occ = [f"AAPL250117C{(100 + i) * 1000:08d}" for i in range(201)]
    await options.send({"action": "subscribe", "quotes": occ})
    assert await options.recv_until(lambda m: m["T"] == "error") == error(405)
    await options.send({"action": "subscribe", "quotes": occ[:200], "trades": occ})
    got = await options.recv_until(lambda m: m["T"] == "subscription")
    assert len(got["quotes"]) == 200
    assert len(got["trades"]) == 201


async def test_basic_rest_entitlements(make_sim: SimFactory) -> None:
    sim = await make_sim(plan="basic", rest_rate_limit=0)
    now = datetime.now(UTC)

    def window(end: datetime) -> dict[str, str]:
        start = (end - timedelta(days=3)).isoformat()
        return {"symbols": "AAPL", "timeframe": "1Min", "start": start, "end": end.isoformat()}

    recent = await sim.get("/v2/stocks/bars", params=window(now) | {"feed": "sip"})
    assert recent.status_code == 403
    assert recent.json()["message"] == "subscription does not permit querying recent SIP data"
    old = await sim.get(
        "/v2/stocks/bars", params=window(now - timedelta(minutes=16)) | {"feed": "sip"}
    )
    assert old.status_code == 200
    assert (
        await sim.get("/v2/stocks/bars", params=window(now) | {"feed": "iex"})
    ).status_code == 200
    delayed = await sim.get("/v2/stocks/bars", params=window(now) | {"feed": "delayed_sip"})
    assert delayed.status_code == 400  # never for history
    latest = "/v2/stocks/quotes/latest"
    assert (
        await sim.get(latest, params={"symbols": "AAPL", "feed": "delayed_sip"})
    ).status_code == 200
    assert (await sim.get(latest, params={"symbols": "AAPL", "feed": "sip"})).status_code == 403
    chain = "/v1beta1/options/snapshots/AAPL"
    assert (await sim.get(chain, params={"feed": "opra"})).status_code == 403
    assert (await sim.get(chain, params={"feed": "indicative"})).status_code == 200
    atp = await make_sim(plan="algo_trader_plus", rest_rate_limit=0)
    assert (
        await atp.get("/v2/stocks/bars", params=window(now) | {"feed": "sip"})
    ).status_code == 200


async def test_a_429_window_without_retry_after(make_sim: SimFactory) -> None:
    sim = await make_sim(plan="basic")
    await sim.post("/sim/faults", {"rest_status": 429, "seconds": 2, "retry_after": False})
    limited = await sim.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3
    while time.time() < reset - 0.3:
        assert (
            await sim.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
        ).status_code == 429
        await asyncio.sleep(0.2)
    await asyncio.sleep(max(0.0, reset - time.time()))
    assert (
        await sim.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
    ).status_code == 200
