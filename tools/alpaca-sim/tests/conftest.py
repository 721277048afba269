"""Fixtures: the simulator served in-process on a free port, and raw websocket helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgpack
import orjson
import pytest
from aiohttp import web
from alpaca_sim.app import create_app
from alpaca_sim.keys import SIM_KEY
from alpaca_sim.settings import Settings
from alpaca_sim.state import SimState
from websockets.asyncio.client import ClientConnection, connect

SECRET = "sim-secret"
KEY_HEADERS = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}


@dataclass
class Sim:
    """A running simulator."""

    port: int
    app: web.Application

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def state(self) -> SimState:
        sim: SimState = self.app[SIM_KEY]
        return sim

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.get(path, headers=kw.pop("headers", KEY_HEADERS), **kw)

    async def post(self, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.post(path, json=body, headers=KEY_HEADERS)


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Sim:
        settings = Settings(**{"port": 0, "rate": 200.0, "rest_rate_limit": 0, **overrides})
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Sim(port, app)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def sim(make_sim: SimFactory) -> Sim:
    return await make_sim()


class Raw:
    """A raw websocket client speaking JSON or msgpack."""

    def __init__(self, ws: ClientConnection, use_msgpack: bool) -> None:
        self.ws = ws
        self.msgpack = use_msgpack

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(msg) if self.msgpack else orjson.dumps(msg).decode())

    async def recv(self, seconds: float = 5.0) -> list[dict[str, Any]]:
        frame = await asyncio.wait_for(self.ws.recv(), seconds)
        if self.msgpack:
            assert isinstance(frame, bytes)
            out: list[dict[str, Any]] = msgpack.unpackb(frame)
        else:
            assert isinstance(frame, str)
            out = orjson.loads(frame)
        return out

    async def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], seconds: float = 5.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            for m in await self.recv(max(deadline - loop.time(), 0.01)):
                if pred(m):
                    return m

    async def auth(self, key: str = "sim-key", secret: str = SECRET) -> list[dict[str, Any]]:
        await self.send({"action": "auth", "key": key, "secret": secret})
        return await self.recv()


RawFactory = Callable[..., Awaitable[Raw]]


@pytest.fixture
async def raw() -> AsyncIterator[RawFactory]:
    opened: list[ClientConnection] = []

    async def open_(url: str, use_msgpack: bool = False, **kw: Any) -> Raw:
        headers = {"Content-Type": "application/msgpack" if use_msgpack else "application/json"}
        headers |= kw.pop("additional_headers", {})
        ws = await connect(url, additional_headers=headers, **kw)
        opened.append(ws)
        client = Raw(ws, use_msgpack)
        return client

    yield open_
    for ws in opened:
        await ws.close()
