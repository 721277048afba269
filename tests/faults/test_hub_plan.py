"""ALPACA_PLAN against alpaca-sim in each plan mode (issue 11, points 3 and 9).

Real hub, nats-server, OpenBao and alpaca-sim. The hub probes the key at start and says in
`/readyz` what it is entitled to; a stream 409 (the feed is not in the plan) stops reconnecting
and fails readiness with that reason; bars older than 15 minutes come from SIP on every plan
(recent ones from IEX on Basic, never a 403); a 429 that carries only `X-RateLimit-Reset` is
waited out until that time; each page of an option chain takes its own token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.security.hub_env import hub_env
from tests.support.hub import TokenMinter, local_settings, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
PLANS = ("basic", "algo_trader_plus")


@pytest.fixture(params=PLANS)
def plan_sim(
    request: pytest.FixtureRequest, alpaca_sim_factory: Callable[..., AlpacaSim]
) -> tuple[str, AlpacaSim]:
    """A simulator enforcing one plan (both, as separate test cases), REST unlimited."""
    plan: str = request.param
    return plan, alpaca_sim_factory(
        env={"SIM_PLAN": plan, "SIM_RATE": "50", "SIM_REST_RATE_LIMIT": "0"}
    )


async def sim_state(sim: AlpacaSim) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        return (await client.get("/sim/state")).json()  # type: ignore[no-any-return]


async def sim_faults(sim: AlpacaSim, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        (await client.post("/sim/faults", json=body)).raise_for_status()


async def wait_for(cond: Callable[[], Any], timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def bare_hub(
    own_nats: str, vault: Vault, sim: AlpacaSim, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A hub that may never become ready (no wait for `/readyz`)."""
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False, **overrides
    )
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    async with running_hub(s) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=30) as c:
            yield c


async def test_readyz_names_the_entitlement_and_bars_use_sip_once_15_minutes_old(
    own_nats: str, vault: Vault, plan_sim: tuple[str, AlpacaSim], tmp_path: Path
) -> None:
    plan, sim = plan_sim
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, TokenMinter(tmp_path), alpaca_plan=plan,
        delay_seconds=900,
    ) as env:  # fmt: skip

        async def probed() -> bool:
            body = (await env.client.get("/readyz")).json()
            return bool(body["alpaca"]["key_entitled_to"]["realtime_sip"] is not None)

        await wait_for(probed)
        r = await env.client.get("/readyz")
        assert r.status_code == 200, r.text
        alpaca = r.json()["alpaca"]
        assert alpaca["plan"] == plan
        assert alpaca["key_entitled_to"]["plan"] == plan
        assert alpaca["key_entitled_to"]["realtime_sip"] is (plan == "algo_trader_plus")
        assert alpaca["feeds"]["stocks"] == ("iex" if plan == "basic" else "sip")
        assert alpaca["rest_rate_per_min"] == (200 if plan == "basic" else 10_000)

        pro, free = env.user("u-pro", "pro"), env.user("u-free", "free")
        now = datetime.now(UTC)
        old = {"timeframe": "1Min", "start": (now - timedelta(days=3)).isoformat(),
               "end": (now - timedelta(days=1)).isoformat()}  # fmt: skip
        recent = {"timeframe": "1Min", "start": (now - timedelta(days=3)).isoformat()}
        r = await env.client.get("/v1/stocks/AAPL/bars", params=old, headers=pro)
        assert r.status_code == 200, r.text
        assert r.json()["feed"] == "sip"
        assert {b["feed"] for b in r.json()["bars"]} <= {"sip"}
        r = await env.client.get("/v1/stocks/AAPL/bars", params=recent, headers=pro)
        assert r.status_code == 200, r.text  # never a 403: IEX on Basic for the last 15 min
        assert r.json()["feed"] == ("iex" if plan == "basic" else "sip")
        r = await env.client.get("/v1/stocks/AAPL/bars", params=recent, headers=free)
        assert r.status_code == 200, r.text  # the delayed path is 15 minutes old: SIP
        assert r.json()["feed"] == "sip"


async def test_stream_409_stops_reconnecting_and_fails_readiness(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., AlpacaSim]
) -> None:
    sim = alpaca_sim_factory(env={"SIM_PLAN": "basic", "SIM_REST_RATE_LIMIT": "0"})
    # the plan says SIP, the key is Basic: the SIP stream answers 409 at auth (the feed is also
    # set explicitly, so a hub that ignored ALPACA_PLAN would hit the same 409)
    async with bare_hub(own_nats, vault, sim, alpaca_plan="algo_trader_plus", feed="sip") as hub:

        async def refused() -> bool:
            checks = (await hub.get("/readyz")).json()["checks"]
            reason = checks.get("upstream_stocks", {}).get("reason") or ""
            return "insufficient subscription (409)" in reason

        await wait_for(refused)
        first = (await sim_state(sim))["stream_connects"]["/v2/sip"]
        await asyncio.sleep(4)  # backoff is at most 1 s here: reconnecting would show
        assert (await sim_state(sim))["stream_connects"]["/v2/sip"] == first == 1
        r = await hub.get("/readyz")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert "not reconnecting" in checks["upstream_stocks"]["reason"]
        assert "ALPACA_PLAN=algo_trader_plus" in checks["alpaca_plan"]["reason"]
        assert r.json()["alpaca"]["key_entitled_to"]["plan"] == "basic"


async def test_a_429_with_only_x_ratelimit_reset_is_waited_out(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., AlpacaSim], tmp_path: Path
) -> None:
    sim = alpaca_sim_factory(env={"SIM_PLAN": "basic", "SIM_REST_RATE_LIMIT": "0"})
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, TokenMinter(tmp_path), rest_max_retries=2
    ) as env:  # fmt: skip
        await asyncio.sleep(1)  # the start-up probe is done
        await sim_faults(sim, {"rest_status": 429, "seconds": 3, "retry_after": False,
                               "path_prefix": "/v2/stocks/bars"})  # fmt: skip
        reset = (await sim_state(sim))["faults"]["rest_until"]
        async with httpx.AsyncClient(base_url=sim.url) as c:
            await c.post("/sim/config", json={"reset_counters": True})
        # a user's request never waits: 503 with the wait Alpaca named
        r = await env.client.get(
            "/v1/stocks/AAPL/bars",
            params={"timeframe": "1Day", "start": "2025-12-01T00:00:00Z",
                    "end": "2025-12-05T00:00:00Z"},
            headers=env.user("u-pro", "pro"),
        )  # fmt: skip
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= int(reset - time.time())
        # the passthrough (internal) waits until the reset, then succeeds
        r = await env.client.get(
            "/alpaca/v2/stocks/bars",
            params={"symbols": "AAPL", "timeframe": "1Day", "start": "2025-12-01",
                    "end": "2025-12-05"},
            headers=env.service_headers,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert time.time() >= reset
        calls = (await sim_state(sim))["rest_calls"]["GET /v2/stocks/bars"]
        # the user's 429 drained the budget until the reset: the passthrough's request waited
        # for it and went out once, after the reset (no second 429)
        assert calls == 2


async def test_each_option_chain_page_takes_a_token(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., AlpacaSim], tmp_path: Path
) -> None:
    sim = alpaca_sim_factory(
        env={"SIM_PLAN": "basic", "SIM_REST_RATE_LIMIT": "0", "SIM_PAGE_SIZE_CAP": "20"}
    )
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, TokenMinter(tmp_path), rest_rate_per_min=480,
    ) as env:  # fmt: skip
        hub = env.app.state.hub
        rest = hub.rest
        bucket = rest.user_quota.bucket("u-chain", rest.user_quota_per_min, rest.user_quota_burst)
        before = bucket.tokens
        t0 = time.monotonic()
        r = await env.client.get("/v1/options/AAPL/chain", headers=env.user("u-chain", "pro"))
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        contracts = len(r.json()["contracts"])
        pages = -(-contracts // 20)
        assert pages > 1
        state = await sim_state(sim)
        assert state["rest_calls"]["GET /v1beta1/options/snapshots/{underlying}"] == pages
        refill = elapsed * rest.user_quota_per_min / 60
        assert bucket.tokens <= before - pages + refill + 0.01  # one token per page
