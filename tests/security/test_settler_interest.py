"""A user's interest request never grows the settle run: the settler records only what the hub
accepted and Alpaca acknowledged (the hub's `UpstreamHeld` record), not what users ask for."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import nats
import pytest
from eod_settler.app import create_app
from eod_settler.runtime import Deps, Runtime
from raxx_contracts import AssetClass, InterestRequest, encode, subjects
from raxx_service_kit.clock import ManualClock

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_calendar import hold_upstream, recorded_symbols
from tests.integration.test_settler_helpers import make_settings

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
D1 = dt.date(2025, 12, 23)


async def test_symbols_a_user_only_asks_for_are_never_settled(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    clock = ManualClock(dt.datetime(2025, 12, 23, 11, 0, tzinfo=NY))
    settings = make_settings(
        own_nats, postgres_dsn, alpaca_sim.url, catchup_sessions=0, interest_flush_seconds=0.1
    )
    app = create_app(settings, Deps(clock=clock))
    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.runtime
        nc = await nats.connect(own_nats)
        try:
            # A hostile free user names 1,000 symbols on its own interest subject, 5 times.
            junk = tuple(f"Z{i:04d}" for i in range(1000))
            subject = subjects.interest("free", subjects.user_token("mallory"))
            for _ in range(5):
                await nc.publish(subject, encode(InterestRequest(consumer_id="x", symbols=junk)))
            await nc.flush()
        finally:
            await nc.close()
        # What the hub really holds upstream is recorded; the request's symbols are not.
        await hold_upstream(own_nats, AssetClass.STOCKS, "AAPL")
        recorded = await recorded_symbols(rt, D1, 1)
        await asyncio.sleep(1.0)  # several more polls: nothing else may arrive
        recorded = {t.symbol for t in await rt.store.universe(D1)}
    assert recorded == {"AAPL"}
