"""Attack: a free token reads around the delay on the hub's HTTP API (issue 10, point 2).

Today's code served a free token live option-chain snapshots (quotes 0 s old, labelled
`delayed`) and bars whose interval ends after the horizon (the current day's bar carries prices
up to now). Against a real hub and alpaca-sim with the default 15-minute delay: every timestamp
in every free (and, for options, pro) body is at or before now minus the delay, and no bar's
interval ends after it. The oracle is computed here from the bar's own time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from raxx_contracts import NanoDatetime

from tests.integration.fixtures.servers import Vault
from tests.security.hub_env import hub_env
from tests.support.hub import TokenMinter

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
DELAY = 900
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def times_in(body: Any) -> list[datetime]:
    out: list[datetime] = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and RFC3339.fullmatch(node):
            out.append(NanoDatetime.parse(node))
    return out


def interval_end(stamp: datetime, timeframe: str) -> datetime:
    """Alpaca stamps bars with their start; a daily bar with New York midnight of its day."""
    if timeframe == "1Min":
        return stamp + timedelta(minutes=1)
    if timeframe == "1Hour":
        return stamp + timedelta(hours=1)
    day: date = stamp.astimezone(NY).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=NY)


async def test_free_token_gets_nothing_younger_than_the_delay_on_any_endpoint(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "300", "SIM_REST_RATE_LIMIT": "0"})
    minter = TokenMinter(tmp_path)
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, minter, delay_seconds=DELAY, rest_rate_per_min=1000
    ) as env:
        free, pro = env.user("u-free", "free"), env.user("u-pro", "pro")
        checked = 0
        for who in (free, pro):  # options are delayed for pro too
            r = await env.client.get("/v1/options/AAPL/chain", headers=who)
            horizon = datetime.now(UTC) - timedelta(seconds=DELAY)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["path"] == "delayed"
            assert body["contracts"], "the chain lists its contracts"
            stamps = times_in(body)
            young = [t for t in stamps if t > horizon]
            assert not young, f"{len(young)} chain times younger than the delay, e.g. {young[0]}"
            assert not any("greeks" in c or "impliedVolatility" in c
                           for c in body["contracts"].values())  # fmt: skip
            checked += len(stamps)

        start = (datetime.now(UTC) - timedelta(days=10)).isoformat()
        for tf in ("1Day", "1Hour", "1Min"):
            r = await env.client.get(
                "/v1/stocks/AAPL/bars", params={"timeframe": tf, "start": start}, headers=free
            )
            horizon = datetime.now(UTC) - timedelta(seconds=DELAY)
            assert r.status_code == 200, r.text
            bars = r.json()["bars"]
            assert bars, f"{tf}: the sim has ten days of history"
            late = [b["timestamp"] for b in bars
                    if interval_end(NanoDatetime.parse(b["timestamp"]), tf) > horizon]  # fmt: skip
            assert not late, f"{tf}: bars ending after the horizon: {late[-3:]}"
            assert all(t <= horizon for t in times_in(r.json()))
            checked += len(bars)

        before = time.time()
        r = await env.client.get("/v1/stocks/AAPL/quotes/latest", headers=free)
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            assert r.json()["path"] == "delayed"
            quote_time = NanoDatetime.parse(r.json()["quote"]["timestamp"])
            assert quote_time.timestamp() <= time.time() - DELAY
            assert quote_time.timestamp() <= before - DELAY + 1
        assert checked > 0

        # a real-time tier still gets the live chain (greeks and all)
        r = await env.client.get("/v1/options/AAPL/chain", headers=env.user("u-pp", "pro_plus"))
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "rt"
