"""The settler's HTTP surface on fake adapters: settles, the kit's error bodies, /readyz,
/metrics and the AsyncAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from eod_settler.app import create_app
from eod_settler.settings import Settings
from raxx_contracts import subjects

from .conftest import FakeStore, Harness


async def test_settles_of_a_date(settler: Harness) -> None:
    r = await settler.client.get("/v1/settles/2025-12-23")
    assert r.status_code == 200
    body = r.json()
    assert body["date"] == "2025-12-23"
    assert body["count"] == 2
    first = body["settles"][0]
    assert first == {
        "schema_version": 1, "symbol": "AAPL", "timestamp": "2025-12-23T21:00:00Z",
        "date": "2025-12-23", "asset_class": "stocks", "price": "271.06",
        "source": "official_close", "feed": "sip", "revision": 1, "stale": False,
        "computed_at": "2025-12-23T21:15:00Z",
    }  # fmt: skip
    assert body["settles"][1]["revision"] == 2


async def test_error_bodies_are_the_kits(settler: Harness) -> None:
    for path, status, code in (
        ("/v1/settles/2025-12-24", 404, "not_found"),
        ("/v1/settles/not-a-date", 400, "bad_date"),
        ("/v1/settles/2025-1-2", 400, "bad_date"),
        ("/v1/nothing", 404, "not_found"),
    ):
        r = await settler.client.get(path)
        assert r.status_code == status, path
        assert set(r.json()) == {"error", "message"}
        assert r.json()["error"] == code
    r = await settler.client.post("/v1/settles/2025-12-23")
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


async def test_database_down_is_503_with_retry_after(settler: Harness, store: FakeStore) -> None:
    store.outage = "OperationalError: connection refused"
    r = await settler.client.get("/v1/settles/2025-12-23")
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json() == {
        "error": "database_unavailable",
        "message": "the settle store is unavailable; retry after Retry-After",
    }
    assert "refused" not in r.text  # the driver's text stays in the log


async def test_readyz_shape(settler: Harness, store: FakeStore) -> None:
    r = await settler.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {
            "postgres": {"ok": True, "reason": None, "critical": True},
            "nats": {"ok": True, "reason": None, "critical": True},
        },
    }
    store.frozen = True
    settler.runtime.nats_ok = False
    r = await settler.client.get("/readyz")
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["postgres"]["ok"] is False
    assert "no answer" in body["checks"]["postgres"]["reason"]
    assert body["checks"]["nats"] == {"ok": False, "reason": "reconnecting", "critical": True}
    store.frozen = False
    store.outage = "no answer within 3.0 s"
    body = (await settler.client.get("/readyz")).json()
    assert body["checks"]["postgres"]["reason"].startswith("down: no answer")


async def test_healthz_and_metrics(settler: Harness) -> None:
    assert (await settler.client.get("/healthz")).json() == {"status": "ok"}
    text = (await settler.client.get("/metrics")).text
    assert "eod_outbox_depth" in text
    assert "eod_task_restarts" in text


async def test_not_started_is_503_not_ready() -> None:
    app = create_app(Settings(env="test"), background=False)  # lifespan never run
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eod") as client:
        r = await client.get("/v1/settles/2025-12-23")
        assert r.status_code == 503
        assert r.json() == {"error": "not_ready", "message": "starting"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["runtime"] == {
            "ok": False, "reason": "starting", "critical": True
        }  # fmt: skip


async def test_asyncapi_names_every_published_subject(settler: Harness) -> None:
    doc = (await settler.client.get("/asyncapi.json")).json()
    published = {
        ch["bindings"]["nats"]["subject"]
        for name, ch in doc["channels"].items()
        if doc["operations"][name]["action"] == "send"
    }
    assert published == {
        subjects.SETTLE_STOCKS_ANY, subjects.SETTLE_OPTIONS_ANY, subjects.SETTLE_DONE_ANY,
        subjects.CORPACTIONS_ANY,
    }  # fmt: skip
    assert published == {
        "md.settle.stocks.>", "md.settle.options.>", "md.settle.done.*", "md.corpactions.>"
    }  # fmt: skip
    assert not [op for op in doc["operations"].values() if op["action"] == "receive"]
    assert (await settler.client.get("/docs/asyncapi")).status_code == 200


async def test_a_crashing_task_shows_in_readyz_and_restarts_are_counted(settler: Harness) -> None:
    supervisor = settler.app.state.supervisor

    async def crashes() -> None:
        raise RuntimeError("boom")

    supervisor.start("relay", crashes)
    deadline = asyncio.get_running_loop().time() + 10
    body: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        r = await settler.client.get("/readyz")
        body = r.json()
        if r.status_code == 503:
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "not_ready"
    check = body["checks"]["task:relay"]
    assert check["ok"] is False
    assert "RuntimeError: boom" in check["reason"]
    text = (await settler.client.get("/metrics")).text
    assert 'eod_task_restarts_total{task="relay"}' in text
    assert (await settler.client.get("/healthz")).status_code == 200  # never given up


async def test_a_failing_scheduler_degrades_readiness_without_failing_it(settler: Harness) -> None:
    """The scheduler retries Alpaca (through the hub); the HTTP API still serves stored settles,
    so the replica stays in rotation and says why it is degraded."""
    supervisor = settler.app.state.supervisor

    async def unreachable() -> None:
        raise RuntimeError("calendar: ConnectionError")

    supervisor.start("scheduler", unreachable)
    deadline = asyncio.get_running_loop().time() + 10
    body: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        r = await settler.client.get("/readyz")
        body = r.json()
        if body["status"] == "degraded":
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["task:scheduler"]["ok"] is False
    assert "ConnectionError" in body["checks"]["task:scheduler"]["reason"]
