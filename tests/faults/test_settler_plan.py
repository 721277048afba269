"""The settler's Alpaca reads under each plan (issue 11, point 3), against alpaca-sim enforcing it.

`ALPACA_PLAN` gives the settler SIP bars on every plan: the window is ended 15 minutes ago, so
a Basic key never touches the recent SIP it may not read (403), even when the settled day's end
is still in the future; option quote mids use the plan's options feed (OPRA on Basic: 403).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from eod_settler.adapters.alpaca import AlpacaCredentials, AlpacaRest
from eod_settler.metrics import Metrics
from eod_settler.ratelimit import TokenBucket
from eod_settler.settings import Settings
from pydantic import SecretStr

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_service import latest_closed_session

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
SYMBOLS = ["AAPL", "MSFT", "SPY"]


@pytest.mark.parametrize("plan", ["basic", "algo_trader_plus"])
async def test_settler_reads_sip_closes_and_its_options_feed_on_each_plan(
    plan: str, alpaca_sim_factory: Callable[..., AlpacaSim]
) -> None:
    sim = alpaca_sim_factory(env={"SIM_PLAN": plan, "SIM_REST_RATE_LIMIT": "0"})
    s = Settings(alpaca_plan=plan, alpaca_data_url=sim.url, alpaca_trading_url=sim.url)
    assert s.alpaca_feed == "sip"
    creds = AlpacaCredentials(SecretStr("sim-key"), SecretStr("sim-secret"))
    rest = AlpacaRest(
        creds, sim.url, sim.url, TokenBucket(6000, 10), Metrics(), NY, s.alpaca_feed,
        options_feed=s.alpaca_options_feed,
    )  # fmt: skip
    day = latest_closed_session(sim.url)
    now = dt.datetime.now(NY)
    closes = await rest.daily_closes(day, SYMBOLS, now)
    assert sorted(closes) == SYMBOLS
    auctions = await rest.closing_auctions(day, SYMBOLS, now)  # SIP only, on both plans
    assert sorted(auctions) == SYMBOLS
    # today's window ends in the future: without the 15-minute end, Basic would answer 403
    await rest.daily_closes(now.date(), SYMBOLS, now)
    # in a day's first 15 minutes the window is empty: nothing is asked (Alpaca answers 422)
    just_after_midnight = dt.datetime.combine(now.date(), dt.time(0, 5), NY)
    assert await rest.daily_closes(now.date(), SYMBOLS, just_after_midnight) == {}
    assert await rest.closing_auctions(now.date(), SYMBOLS, just_after_midnight) == {}
    occ = ["AAPL251219C00200000"]
    await rest.quote_mids(day, occ)  # indicative on Basic, OPRA on Algo Trader Plus: no 403
