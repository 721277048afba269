"""Attack: read internal details out of the hub's error replies; slip a path past the
passthrough allow-list with a trailing newline (issue 10, point 6).

An upstream (or a proxy in front of it) that fails with its own text (internal addresses,
stack traces) used to reach the caller verbatim: `Alpaca REST answered 403: <upstream text>` on
the HTTP API, the raw 5xx body through `/alpaca`. Now every error reply is a code and a fixed
message; the upstream text is logged. The upstream here is a real local HTTP server that
answers every data request with such an error; the stream comes from alpaca-sim.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from raxx_devstack.ports import free_port

from tests.integration.fixtures.servers import Vault
from tests.security.hub_env import hub_env
from tests.support.hub import TokenMinter

pytestmark = pytest.mark.integration
MARKER = "leak-marker-7f3a"
INTERNAL = f"http://10.9.8.7:8200/v1/secret/data/raxx {MARKER} Traceback (most recent call last)"


async def failing(request: web.Request) -> web.Response:
    path = request.path
    if "/stocks/bars" in path:
        return web.json_response({"code": 40310000, "message": INTERNAL}, status=403)
    if "/stocks/quotes" in path:
        return web.Response(status=500, text=f"<html><pre>{INTERNAL}</pre></html>")
    if "/options/snapshots" in path:
        return web.Response(status=400, text=INTERNAL)
    if path == "/v2/calendar":
        return web.Response(status=403, text=f"<html>proxy {INTERNAL}</html>")
    return web.json_response({"code": 50010000, "message": INTERNAL}, status=502)


@pytest_asyncio.fixture
async def bad_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", failing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_error_replies_carry_a_code_and_a_safe_message_never_upstream_text(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., Any], tmp_path: Path,
    bad_upstream: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    sim = alpaca_sim_factory(env={"SIM_RATE": "50"})
    async with hub_env(
        own_nats, vault, bad_upstream, sim.ws_url, TokenMinter(tmp_path),
        alpaca_trading_url=bad_upstream,
    ) as env:  # fmt: skip
        pro, free = env.user("u1", "pro_plus"), env.user("u2", "free")
        cases = [
            ("/v1/stocks/AAPL/bars", pro, 502, "upstream_error"),
            ("/v1/stocks/AAPL/quotes/latest", free, 503, "upstream_unavailable"),
            ("/v1/options/AAPL/chain", pro, 400, "bad_request"),
        ]
        for url, who, status, code in cases:
            r = await env.client.get(url, headers=who)
            assert r.status_code == status, (url, r.text)
            assert set(r.json()) == {"error", "message"}, r.text
            assert r.json()["error"] == code
            assert MARKER not in r.text, f"{url} leaked upstream text: {r.text}"
            assert "10.9.8.7" not in r.text
        for path in ("/alpaca/v2/clock", "/alpaca/v2/calendar", "/alpaca/v2/stocks/bars"):
            r = await env.client.get(path, params={"symbols": "AAPL"}, headers=env.service_headers)
            assert r.status_code >= 400, path
            assert MARKER not in r.text, f"{path} leaked upstream text: {r.text}"
            assert set(r.json()) == {"code", "message"}, r.text
        assert MARKER in caplog.text, "the detail is logged for operators"


async def test_passthrough_refuses_a_trailing_newline(
    own_nats: str, vault: Vault, alpaca_sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    sim = alpaca_sim_factory(env={"SIM_RATE": "50"})
    async with hub_env(
        own_nats, vault, sim.url, sim.ws_url, TokenMinter(tmp_path), alpaca_trading_url=sim.url
    ) as env:
        h = env.service_headers
        assert (await env.client.get("/alpaca/v2/clock", headers=h)).status_code == 200
        for raw in ("/alpaca/v2/clock%0a", "/alpaca/v2/clock%0A", "/alpaca/v2/clock%0d%0a",
                    "/alpaca/v2/stocks/AAPL/bars%0a", "/alpaca/v2/calendar%0a%0a"):  # fmt: skip
            r = await env.client.get(raw, headers=h)
            assert r.status_code == 404, (raw, r.status_code, r.text)
        metrics = env.app.state.metrics.registry
        sent = {
            route: metrics.get_sample_value(
                "mdh_passthrough_requests_total", {"route": route, "outcome": "ok"}
            )
            for route in ("/v2/clock", "/v2/calendar", "/v2/stocks/{symbol}/bars")
        }
        assert sent == {"/v2/clock": 1, "/v2/calendar": None, "/v2/stocks/{symbol}/bars": None}
