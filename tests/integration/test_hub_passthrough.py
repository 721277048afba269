"""The hub's `/alpaca` passthrough: eod-settler, unmodified alpaca-py, settles through a real hub.

Real nats-server, OpenBao, PostgreSQL and alpaca-sim; the hub runs in this event loop behind a
real uvicorn socket (alpaca-py in the settler speaks plain HTTP to it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import hvac
import pytest
import pytest_asyncio
import uvicorn
from eod_settler.settings import SettlerVault as EodVault
from market_data_hub.passthrough import secret_digest
from raxx_devstack.ports import free_port

from tests.integration.fixtures.servers import Vault
from tests.integration.test_settler_helpers import (
    Consumer,
    make_settings,
    open_runtime,
)
from tests.support.hub import local_settings, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
D1 = dt.date(2025, 12, 23)
SYMBOLS = ["AAPL", "MSFT", "BRK.B", "SPY", "NOAUCX"]  # NOAUCX: no closing auction in the sim


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "300"})


@pytest_asyncio.fixture
async def hub(own_nats: str, vault: Vault, sim: Any) -> AsyncIterator[dict[str, Any]]:
    """A hub with service client `eod-settler` (secret in Vault at a unique settler path)."""
    tag = uuid.uuid4().hex[:8]
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False,
        alpaca_trading_url=sim.url, rest_rate_per_min=600, tier_gate_jwks_url="/nonexistent",
    )  # fmt: skip
    s.vault.service_clients_path = f"raxx/market-data-hub/service-clients-{tag}"
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    client_secret = secrets.token_urlsafe(32)
    bao = hvac.Client(url=vault.addr, token=vault.token)
    bao.secrets.kv.v2.create_or_update_secret(
        path=s.vault.service_clients_path, mount_point="secret",
        secret={"eod-settler": secret_digest(client_secret)},
    )  # fmt: skip
    settler_path = f"raxx/eod-settler/hub-client-{tag}"
    bao.secrets.kv.v2.create_or_update_secret(
        path=settler_path, mount_point="secret",
        secret={"key_id": "eod-settler", "secret_key": client_secret},
    )  # fmt: skip
    port = free_port()
    async with running_hub(s) as app:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", ws="none",
                           log_level="warning")
        )  # fmt: skip
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.05)
        try:
            yield {"url": f"http://127.0.0.1:{port}", "settler_path": settler_path, "app": app,
                   "secret": client_secret}  # fmt: skip
        finally:
            server.should_exit = True
            await task


async def test_settler_settles_through_the_hub_passthrough(
    own_nats: str, postgres_dsn: str, vault: Vault, hub: dict[str, Any]
) -> None:
    base = f"{hub['url']}/alpaca"
    settings = make_settings(
        own_nats, postgres_dsn, base, symbols=SYMBOLS, alpaca_key_id=None,
        alpaca_secret_key=None,
        vault=EodVault(addr=vault.addr, token=vault.token, path=hub["settler_path"]),
    )  # fmt: skip
    assert settings.alpaca_data_url == settings.alpaca_trading_url == base
    mbt = Consumer(own_nats)
    rt = await open_runtime(settings)
    try:
        report = await rt.settler.run(D1)
    finally:
        await rt.close()
    assert report.count == len(SYMBOLS)
    await mbt.ensure()
    await mbt.consume()
    assert sorted(s.symbol for s in mbt.seen.settles) == sorted(SYMBOLS)
    sources = {s.symbol: (s.source, s.feed) for s in mbt.seen.settles}
    assert sources["NOAUCX"] == ("daily_bar", "sip")  # no closing auction: the bar, labelled
    assert {v for k, v in sources.items() if k != "NOAUCX"} == {("auction", "sip")}
    metrics = hub["app"].state.metrics.registry
    calendar = metrics.get_sample_value(
        "mdh_passthrough_requests_total", {"route": "/v2/calendar", "outcome": "ok"}
    )
    bars = metrics.get_sample_value(
        "mdh_passthrough_requests_total", {"route": "/v2/stocks/bars", "outcome": "ok"}
    )
    auctions = metrics.get_sample_value(
        "mdh_passthrough_requests_total", {"route": "/v2/stocks/auctions", "outcome": "ok"}
    )
    assert (calendar or 0) >= 1
    assert (bars or 0) >= 1
    assert (auctions or 0) >= 1


async def test_passthrough_refuses_bad_secret_unknown_path_and_writes(
    hub: dict[str, Any],
) -> None:
    base = f"{hub['url']}/alpaca"
    good = {"APCA-API-KEY-ID": "eod-settler", "APCA-API-SECRET-KEY": hub["secret"]}
    bad = {"APCA-API-KEY-ID": "eod-settler", "APCA-API-SECRET-KEY": "wrong"}
    params = {"start": "2025-12-22", "end": "2025-12-23"}
    async with httpx.AsyncClient() as c:
        ok = await c.get(f"{base}/v2/calendar", params=params, headers=good)
        assert ok.status_code == 200, ok.text
        assert [d["date"] for d in ok.json()] == ["2025-12-22", "2025-12-23"]
        r = await c.get(f"{base}/v2/calendar", params=params, headers=bad)
        assert r.status_code == 401
        assert r.json()["code"] == 40110000
        assert hub["secret"] not in r.text
        r = await c.get(f"{base}/v2/calendar", params=params)
        assert r.status_code == 401
        sim_key = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}
        r = await c.get(f"{base}/v2/calendar", params=params, headers=sim_key)
        assert r.status_code == 401  # the Alpaca key itself is not a service client
        for path in ("/v2/account", "/v2/orders", "/v2/stocks/../account", "/v1/x"):
            r = await c.get(f"{base}{path}", headers=good)
            assert r.status_code == 404, path
        r = await c.post(f"{base}/v2/calendar", headers=good)
        assert r.status_code == 405
        bars = await c.get(
            f"{base}/v2/stocks/bars",
            params={"symbols": "AAPL,BRK.B", "timeframe": "1Day", "start": "2025-12-22",
                    "end": "2025-12-24"},
            headers=good,
        )  # fmt: skip
        assert bars.status_code == 200, bars.text
        assert set(bars.json()["bars"]) == {"AAPL", "BRK.B"}


async def test_settler_corporate_actions_through_the_hub_passthrough(
    own_nats: str, postgres_dsn: str, vault: Vault, hub: dict[str, Any]
) -> None:
    base = f"{hub['url']}/alpaca"
    settings = make_settings(
        own_nats, postgres_dsn, base, symbols=["AAPL"], alpaca_key_id=None,
        alpaca_secret_key=None,
        vault=EodVault(addr=vault.addr, token=vault.token, path=hub["settler_path"]),
    )  # fmt: skip
    rt = await open_runtime(settings)
    try:
        report = await rt.corpactions.run(dt.date(2026, 1, 5))
    finally:
        await rt.close()
    assert (report.actions, report.published) == (2, 2)  # the sim's AAPL split and dividend
    metrics = hub["app"].state.metrics.registry
    calls = metrics.get_sample_value(
        "mdh_passthrough_requests_total", {"route": "/v1/corporate-actions", "outcome": "ok"}
    )
    assert (calls or 0) >= 1
