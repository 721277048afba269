"""market-data-hub: the delayed path (never early, survives a restart) and the HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from market_data_hub.normalize import event_ns
from market_data_hub.settings import Settings
from nats.aio.client import Client
from raxx_contracts import InterestRequest, encode, subjects

from tests.support.hub import (
    TokenMinter,
    local_settings,
    request_interest,
    running_hub,
    write_alpaca_key,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "300"})


@pytest.fixture
def minter(tmp_path: Path) -> TokenMinter:
    return TokenMinter(tmp_path)


@pytest.fixture
def settings(own_nats: str, vault: Any, sim: Any, minter: TokenMinter) -> Settings:
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False,
        tier_gate_jwks_url=str(minter.jwks_path),
    )  # fmt: skip
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    return s


@pytest_asyncio.fixture
async def nc(own_nats: str) -> AsyncIterator[Client]:
    c = await nats.connect(own_nats)
    yield c
    await c.drain()


async def lease(nc: Client, *symbols: str) -> None:
    req = InterestRequest(consumer_id="t", symbols=symbols, lease_seconds=300)
    await request_interest(nc, encode(req))


async def test_delayed_path_is_never_early_and_survives_a_restart(
    settings: Settings, nc: Client
) -> None:
    rt: set[tuple[str, bytes]] = set()
    delayed: list[tuple[int, str, bytes]] = []

    async def on_rt(m: Any) -> None:
        rt.add((m.subject, m.data))

    async def on_delayed(m: Any) -> None:
        delayed.append((time.time_ns(), m.subject, m.data))

    await nc.subscribe("md.rt.>", cb=on_rt)
    await nc.subscribe("md.delayed.>", cb=on_delayed)
    async with running_hub(settings):
        await lease(nc, "AAPL", "MSFT")
        await asyncio.sleep(3.5)
    assert delayed, "something was released while the first hub ran"
    await asyncio.sleep(1.0)  # everything captured is now overdue
    async with running_hub(settings.model_copy(update={"replica_id": "second"})):
        await asyncio.sleep(3.0)
    delay_ns = int(settings.delay_seconds * 1e9)
    for received, _, data in delayed:
        assert received >= event_ns(data) + delay_ns
    got = {(subjects.to_delayed(s), d) for s, d in rt}
    released = {(s, d) for _, s, d in delayed}
    due = {(s, d) for s, d in got if event_ns(d) + delay_ns < time.time_ns() - 2_000_000_000}
    assert due <= released, f"{len(due - released)} due messages were never released"


async def test_http_free_gets_delayed_path_pro_gets_rt_and_errors_are_clear(
    settings: Settings, sim: Any, nc: Client, minter: TokenMinter
) -> None:
    free = {"Authorization": f"Bearer {minter.token('u1', 'free')}"}
    pro = {"Authorization": f"Bearer {minter.token('u2', 'pro')}"}
    async with running_hub(settings) as app:
        await lease(nc, "AAPL")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
            for _ in range(100):
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await c.get("/readyz")).status_code == 200
            r = await c.get("/v1/stocks/AAPL/quotes/latest")
            assert r.status_code == 401
            assert r.json()["error"] == "unauthorized"
            await asyncio.sleep(settings.delay_seconds + 1.0)
            r = await c.get("/v1/stocks/AAPL/quotes/latest", headers=pro)
            assert r.status_code == 200, r.text
            assert r.json()["path"] == "rt"
            r = await c.get("/v1/stocks/AAPL/quotes/latest", headers=free)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["path"] == "delayed"
            horizon = datetime.now(UTC) - timedelta(seconds=settings.delay_seconds)
            assert datetime.fromisoformat(body["quote"]["timestamp"]) <= horizon

            end = datetime.now(UTC).isoformat()
            r = await c.get("/v1/stocks/AAPL/bars", params={"end": end}, headers=free)
            assert r.status_code == 200, r.text
            assert r.json()["path"] == "delayed"
            for b in r.json()["bars"]:
                assert datetime.fromisoformat(b["timestamp"]) <= horizon
            assert (await c.get("/v1/stocks/bad$sym/bars", headers=pro)).status_code == 400
            r = await c.get("/v1/stocks/AAPL/bars", params={"timeframe": "7Parsecs"}, headers=pro)
            assert r.status_code == 400
            assert "timeframe" in r.json()["message"]
            r = await c.get("/v1/stocks/AAPL/bars", params={"start": "yesterday"}, headers=pro)
            assert r.status_code == 400  # the kit's one validation policy (was 422)
            assert r.json()["error"] == "bad_request"

            r = await c.get("/v1/options/AAPL/chain", params={"date": "2024-01-02"}, headers=pro)
            assert r.status_code == 403
            assert "historical option chains" in r.json()["message"]

            async with httpx.AsyncClient() as sc:
                await sc.post(f"{sim.url}/sim/faults", json={"rest_status": 429, "count": 50})
            r = await c.get("/v1/stocks/MSFT/bars", params={"timeframe": "5Min"}, headers=pro)
            assert r.status_code == 503
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"] == "upstream_unavailable"
            text = (await c.get("/metrics")).text
            assert 'mdh_rest_calls_total{endpoint="bars",status="429"}' in text
