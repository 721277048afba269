"""`create_app`: the whole simulator as one aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from alpaca_sim import auctions, corpactions, oauth, rest_data, rest_options, sim_api, trading_api
from alpaca_sim.http_common import rest_middleware
from alpaca_sim.keys import SIM_KEY
from alpaca_sim.protocol import ENDPOINTS
from alpaca_sim.settings import Settings
from alpaca_sim.state import SimState
from alpaca_sim.streams import stream_handler


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the app; the ticker starts and stops with it."""
    settings = settings or Settings()
    sim = SimState(settings)
    app = web.Application(
        middlewares=[rest_middleware],
        client_max_size=64 * 1024 * 1024,
        # `symbols=` lists of thousands of tickers (EOD settlement) exceed aiohttp's 8 KiB line.
        handler_args={"max_line_size": 1024 * 1024, "max_field_size": 64 * 1024},
    )
    app[SIM_KEY] = sim
    for path in ENDPOINTS:
        app.router.add_get(path, stream_handler)
    app.add_routes(auctions.routes())
    app.add_routes(rest_data.routes())
    app.add_routes(rest_options.routes())
    app.add_routes(trading_api.routes())
    app.add_routes(sim_api.routes())
    corpactions.install(app)
    app.router.add_get("/oauth/authorize", oauth.authorize)
    app.router.add_post("/oauth/token", oauth.token)
    app.router.add_post("/oauth/revoke", oauth.revoke)
    app.cleanup_ctx.append(_ticker)
    return app


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIM_KEY]
    task = asyncio.create_task(sim.engine.run(), name="alpaca-sim-ticker")
    yield
    for conn in list(sim.engine.connections):
        conn.abort()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
