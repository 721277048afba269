"""eod-settler with PostgreSQL stopped or frozen: its API answers a fast 503 with
Retry-After, and serves again as soon as the database is back, without a restart (issue 14
point 3)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from eod_settler.app import create_app
from eod_settler.settings import Settings

from tests.faults.postgres import PrivatePostgres, private_pg

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)
__all__ = ["private_pg"]

URL = "/v1/settles/2024-01-02"  # a date with no settles: 404 while the database answers


@pytest_asyncio.fixture
async def settler(own_nats: str, private_pg: PrivatePostgres) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        env="dev", nats_url=own_nats, database_url=private_pg.dsn,
        alpaca_key_id="sim-key", alpaca_secret_key="sim-secret",
    )  # fmt: skip
    app = create_app(settings, background=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eod") as client:
            yield client


async def _get(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = await client.get(URL, timeout=30)
    return resp, time.monotonic() - started


async def _fast_503s(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        resp, took = await _get(client)
        log.info("%s after %.2f s", resp.status_code, took)
        assert resp.status_code == 503, resp.text
        assert took < 5.0, f"503 took {took:.1f} s"
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.json()["error"] == "database_unavailable"


async def _recovery(client: httpx.AsyncClient, since: float) -> tuple[float, float]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp, took = await _get(client)
        if resp.status_code == 404:
            return time.monotonic() - since, took
        assert resp.status_code == 503, resp.text
        await asyncio.sleep(0.05)
    pytest.fail("the API did not recover within 30 s of PostgreSQL's return")


async def test_stopped_postgres_is_a_fast_503_and_heals(
    settler: httpx.AsyncClient, private_pg: PrivatePostgres
) -> None:
    assert (await _get(settler))[0].status_code == 404
    private_pg.stop()
    await _fast_503s(settler)
    ready = await settler.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["postgres"]["ok"] is False
    private_pg.start()
    after, first = await _recovery(settler, time.monotonic())
    log.info(
        "settler serving %.2f s after PostgreSQL answered (first: %.0f ms)", after, first * 1e3
    )
    assert after < 5.0


async def test_frozen_postgres_is_a_fast_503_and_heals(
    settler: httpx.AsyncClient, private_pg: PrivatePostgres
) -> None:
    assert (await _get(settler))[0].status_code == 404
    private_pg.signal(signal.SIGSTOP)
    try:
        await _fast_503s(settler)
    finally:
        private_pg.signal(signal.SIGCONT)
    after, first = await _recovery(settler, time.monotonic())
    log.info("settler serving %.2f s after SIGCONT (first: %.0f ms)", after, first * 1e3)
    assert after < 5.0
