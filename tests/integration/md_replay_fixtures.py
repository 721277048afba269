"""Shared helpers of the md-replay tests: capture streams as `capture` declares them, a
recording publisher, and md-replay's app run in this event loop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
from fastapi import FastAPI
from market_data_hub.adapters.nats import capture_config
from market_data_hub.settings import Settings as HubSettings
from md_replay.app import Deps, create_app
from md_replay.settings import Settings
from nats.aio.client import Client
from nats.js import JetStreamContext
from raxx_contracts import AssetClass, Path, subjects
from raxx_contracts.timestamps import format_epoch_ns

TOKEN = "A" * 24
OTHER = "B" * 24


async def capture_streams(js: JetStreamContext) -> None:
    """The four capture streams, as the hub declares them."""
    for path in Path:
        for asset in AssetClass:
            await js.add_stream(capture_config(path, asset, HubSettings()))


def quote(symbol: str, i: int) -> bytes:
    """A quote payload as the hub publishes it (timestamp = now, a counter in the price)."""
    return orjson.dumps(
        {
            "schema_version": 1,
            "symbol": symbol,
            "timestamp": format_epoch_ns(time.time_ns()),
            "feed": "iex",
            "bid_price": f"{100 + i / 100:.2f}",
            "bid_size": 1,
            "ask_price": f"{101 + i / 100:.2f}",
            "ask_size": 2,
        }
    )


def trade(symbol: str, i: int) -> bytes:
    """A trade payload."""
    return orjson.dumps(
        {
            "schema_version": 1,
            "symbol": symbol,
            "timestamp": format_epoch_ns(time.time_ns()),
            "feed": "iex",
            "price": f"{100 + i / 100:.2f}",
            "size": i % 7 + 1,
            "id": i,
            "exchange": "V",
        }
    )


async def publish_tape(
    js: JetStreamContext, symbols: list[str], n: int, asset: AssetClass = AssetClass.STOCKS
) -> None:
    """`n` messages round-robin over symbols and quotes/trades, each stored (acked)."""
    from raxx_contracts import Channel

    for i in range(n):
        sym = symbols[i % len(symbols)]
        ch = Channel.QUOTES if i % 3 else Channel.TRADES
        body = quote(sym, i) if ch is Channel.QUOTES else trade(sym, i)
        await js.publish(subjects.to_capture(subjects.rt(asset, ch, sym)), body)


def settings(nats_url: str, **overrides: Any) -> Settings:
    """md-replay settings for a test: no scheduler, short timeouts."""
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "archive_schedule": False,
        "ack_timeout_seconds": 3.0,
        "delay_seconds": 900.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_replay(s: Settings) -> AsyncIterator[tuple[FastAPI, Client]]:
    """md-replay's app, its lifespan running, and its own NATS connection."""
    nc = await nats.connect(s.nats_url)
    app = create_app(s, Deps(nc=nc))
    try:
        async with app.router.lifespan_context(app):
            yield app, nc
    finally:
        await nc.drain()
