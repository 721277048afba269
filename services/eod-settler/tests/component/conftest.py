"""Fake adapters for the settler's component tests (no servers): a store that serves canned
settles and can be put "down", a runtime around it, and the app under httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from eod_settler.app import create_app
from eod_settler.errors import DatabaseUnavailableError
from eod_settler.settings import Settings
from fastapi import FastAPI
from raxx_service_kit.http import Check

DAY = dt.date(2025, 12, 23)
CLOSE = dt.datetime(2025, 12, 23, 21, 0, tzinfo=dt.UTC)


def settle_row(symbol: str, price: str, revision: int = 1) -> dict[str, Any]:
    """A row as `Store.settles_for_date` returns it."""
    return {
        "date": DAY, "symbol": symbol, "revision": revision, "asset_class": "stocks",
        "price": Decimal(price), "source": "official_close", "feed": "sip", "stale": False,
        "session_close": CLOSE, "computed_at": CLOSE + dt.timedelta(minutes=15),
    }  # fmt: skip


@dataclass
class FakeStore:
    """The part of `Store` the HTTP surface uses."""

    rows: dict[dt.date, list[dict[str, Any]]] = field(default_factory=dict)
    outage: str | None = None
    frozen: bool = False
    closed: bool = False

    async def settles_for_date(self, date: dt.date) -> list[dict[str, Any]]:
        if self.outage is not None:
            raise DatabaseUnavailableError(log_detail=f"postgres down ({self.outage})")
        return self.rows.get(date, [])

    async def ping(self) -> None:
        if self.frozen:
            raise DatabaseUnavailableError(log_detail="no answer within 3.0 s")

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeRuntime:
    """What the app's lifespan and routes need of `Runtime` (background tasks off)."""

    store: FakeStore
    nats_ok: bool = True
    closed: bool = False

    def nats_check(self) -> Check:
        return Check(ok=self.nats_ok, reason=None if self.nats_ok else "reconnecting")

    async def close(self) -> None:
        self.closed = True
        await self.store.close()


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: FakeRuntime


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(rows={DAY: [settle_row("AAPL", "271.06"), settle_row("BRK.B", "497.5", 2)]})


@pytest.fixture
async def settler(store: FakeStore) -> AsyncIterator[Harness]:
    """The settler app (API only) with a fake runtime, its lifespan run, an ASGI client."""
    runtime = FakeRuntime(store)

    async def open_runtime(*_args: Any, **_kw: Any) -> Any:
        return runtime

    settings = Settings(env="test", nats_url="nats://127.0.0.1:1")
    app = create_app(settings, background=False, open_runtime=open_runtime)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://eod")
        )
        yield Harness(app, client, runtime)
    assert runtime.closed
