"""Attack: one user starves the shared Alpaca budget through the hub (issue 10, point 5).

Today's code put every HTTP API call and the settler's `/alpaca` passthrough on one token bucket
that waits: a free user hammering with varied `start` (defeating coalescing) queued everyone,
the end-of-day passthrough included, behind its requests, and never got a refusal. Against a
real hub and alpaca-sim: the hammering user gets 429 + Retry-After at once (never a wait);
another user still gets answers; many users saturating the users' share get 503
`budget_exhausted` at once, while the passthrough keeps answering from its reserve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.fixtures.servers import Vault
from tests.security.hub_env import HubEnv, hub_env
from tests.support.hub import TokenMinter

pytestmark = pytest.mark.integration
RATE = 120  # Alpaca REST budget per minute: users' pool 90/min (burst 15), reserve 30/min


def bars_params(i: int) -> dict[str, str]:
    """A distinct request each time: `start` varies, so neither cache nor coalescing help."""
    start = datetime(2025, 12, 1, tzinfo=UTC) + timedelta(minutes=i)
    end = start + timedelta(hours=6)
    return {"timeframe": "1Min", "start": start.isoformat(), "end": end.isoformat()}


async def passthrough_bars(env: HubEnv) -> tuple[int, float]:
    t0 = time.monotonic()
    r = await env.client.get(
        "/alpaca/v2/stocks/bars",
        params={"symbols": "AAPL", "timeframe": "1Day", "start": "2025-12-01",
                "end": "2025-12-05"},
        headers=env.service_headers,
    )  # fmt: skip
    return r.status_code, time.monotonic() - t0


async def test_one_user_cannot_starve_the_budget_and_the_passthrough_keeps_its_share(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "100", "SIM_REST_RATE_LIMIT": "0"})
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, TokenMinter(tmp_path), alpaca_trading_url=sim.url,
        rest_rate_per_min=RATE, rest_reserved_share=0.25, rest_cache_seconds=1,
    ) as env:  # fmt: skip
        hammer = env.user("hammer", "free")

        # 1. one free user, 40 distinct requests at once: refused fast, never queued
        t0 = time.monotonic()
        replies = await asyncio.gather(
            *(env.client.get("/v1/stocks/AAPL/bars", params=bars_params(i), headers=hammer)
              for i in range(40))
        )  # fmt: skip
        took = time.monotonic() - t0
        codes = [r.status_code for r in replies]
        limited = [r for r in replies if r.status_code == 429]
        assert limited, f"no 429 for a hammering user: {codes}"
        assert codes.count(200) <= 10, codes  # the free tier's burst
        for r in limited:
            assert r.json()["error"] in ("rate_limited", "upstream_quota"), r.text
            assert int(r.headers["Retry-After"]) >= 1
        assert any(r.json()["error"] == "rate_limited" for r in limited)
        assert took < 15, f"the hub made the hammering user wait {took:.1f} s"

        # 2. cached or not, every request counts: repeating one URL is limited as well
        r = await env.client.get("/v1/stocks/AAPL/bars", params=bars_params(0), headers=hammer)
        assert r.status_code == 429
        assert r.json()["error"] == "rate_limited"

        # 3. another user and the passthrough still get answers
        r = await env.client.get(
            "/v1/stocks/AAPL/bars", params=bars_params(1000), headers=env.user("calm", "free")
        )
        assert r.status_code == 200, r.text
        status, _ = await passthrough_bars(env)
        assert status == 200

        # 4. many users saturate the users' share: refused at once (503 budget_exhausted);
        #    the passthrough (end-of-day settler) keeps answering from its reserve meanwhile
        async def crowd() -> list[httpx.Response]:
            out: list[httpx.Response] = []
            for wave in range(3):
                n = 2000 + 100 * wave
                out += await asyncio.gather(
                    *(env.client.get("/v1/stocks/AAPL/bars", params=bars_params(n + u),
                                     headers=env.user(f"crowd-{u}", "free"))
                      for u in range(30))
                )  # fmt: skip
            return out

        crowd_task = asyncio.create_task(crowd())
        passthrough = [await passthrough_bars(env) for _ in range(4)]
        crowded = await crowd_task
        exhausted = [r for r in crowded if r.status_code == 503]
        assert exhausted, [r.status_code for r in crowded]
        for r in exhausted:
            assert r.json()["error"] == "budget_exhausted", r.text
            assert int(r.headers["Retry-After"]) >= 1
        assert all(s == 200 for s, _ in passthrough), passthrough
        # 4 calls fit the 30/min reserve's burst (5); on one shared bucket that waits they
        # would have queued behind the crowd's 90 calls for about a minute
        assert sum(t for _, t in passthrough) < 20, passthrough

        text = (await env.client.get("/metrics")).text
        assert 'mdh_rate_limited_total{code="rate_limited"}' in text
        assert 'mdh_rate_limited_total{code="budget_exhausted"}' in text
