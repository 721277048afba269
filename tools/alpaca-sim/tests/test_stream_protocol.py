"""The stream protocol over raw websockets: JSON and msgpack framing and every error code."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgpack
from websockets.exceptions import ConnectionClosed

from .conftest import Raw, RawFactory, Sim, SimFactory

RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def error(code: int) -> dict[str, object]:
    msgs = {
        400: "invalid syntax",
        401: "not authenticated",
        402: "auth failed",
        403: "already authenticated",
        404: "auth timeout",
        405: "symbol limit exceeded",
        406: "connection limit exceeded",
        407: "slow client",
        409: "insufficient subscription",
        410: "invalid subscribe action for this feed",
        412: "option messages are only available in MsgPack format",
        413: "star subscription is not allowed for option quotes",
    }
    return {"T": "error", "code": code, "msg": msgs[code]}


async def connected(raw: RawFactory, sim: Sim, path: str = "/v2/iex", mp: bool = False) -> Raw:
    client = await raw(sim.ws(path), use_msgpack=mp)
    assert await client.recv() == [{"T": "success", "msg": "connected"}]
    return client


async def authed(raw: RawFactory, sim: Sim, path: str = "/v2/iex", mp: bool = False) -> Raw:
    client = await connected(raw, sim, path, mp)
    assert await client.auth() == [{"T": "success", "msg": "authenticated"}]
    return client


async def closed(client: Raw, seconds: float = 5.0) -> bool:
    """Read until the server hangs up (True) or goes quiet for `seconds` (False)."""
    return (await drain(client, seconds))[1] == "closed"


async def drain(client: Raw, seconds: float) -> tuple[list[dict[str, Any]], str]:
    """Everything received until the socket closes, stays quiet, or sends an undecodable frame."""
    got: list[dict[str, Any]] = []
    try:
        while True:
            got += await client.recv(seconds)
    except ConnectionClosed:
        return got, "closed"
    except TimeoutError:
        return got, "quiet"
    except ValueError:
        return got, "malformed"


async def test_json_client_gets_batched_data_with_nanosecond_times(
    sim: Sim, raw: RawFactory
) -> None:
    await sim.post("/sim/config", {"rate": 2000})
    client = await authed(raw, sim)
    await client.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL", "MSFT"]})
    sub = await client.recv()
    assert sub == [
        {
            "T": "subscription",
            "trades": ["AAPL"],
            "quotes": ["AAPL", "MSFT"],
            "bars": [],
            "updatedBars": [],
            "dailyBars": [],
            "statuses": [],
            "lulds": [],
            "imbalances": [],
            "corrections": ["AAPL"],
            "cancelErrors": ["AAPL"],
        }
    ]
    batch = await client.recv()
    while len(batch) < 2:
        batch = await client.recv()
    assert {m["T"] for m in batch} <= {"t", "q", "c", "x"}
    assert all(RFC3339_NS.match(m["t"]) for m in batch)
    await client.send({"action": "unsubscribe", "quotes": ["MSFT"]})
    ack = await client.recv_until(lambda m: m["T"] == "subscription")
    assert ack["quotes"] == ["AAPL"]


async def test_msgpack_timestamps_are_ext_type(sim: Sim, raw: RawFactory) -> None:
    client = await authed(raw, sim, mp=True)
    await client.send({"action": "subscribe", "quotes": ["AAPL"]})
    await client.recv_until(lambda m: m["T"] == "subscription")
    quote = await client.recv_until(lambda m: m["T"] == "q")
    assert isinstance(quote["t"], msgpack.Timestamp)
    assert next(iter(quote)) == "T"


async def test_auth_by_upgrade_headers(sim: Sim, raw: RawFactory) -> None:
    client = await raw(
        sim.ws("/v2/iex"),
        additional_headers={"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"},
    )
    assert await client.recv() == [{"T": "success", "msg": "connected"}]
    assert await client.recv() == [{"T": "success", "msg": "authenticated"}]
    assert await client.auth() == [error(403)]


async def test_400_401_402_403(sim: Sim, raw: RawFactory) -> None:
    client = await connected(raw, sim)
    await client.ws.send("{not json")
    assert await client.recv() == [error(400)]
    await client.send({"action": "subscribe", "trades": ["AAPL"]})
    assert await client.recv() == [error(401)]
    assert await client.auth(secret="wrong") == [error(402)]
    assert await client.auth() == [{"T": "success", "msg": "authenticated"}]
    assert await client.auth() == [error(403)]
    await client.send({"action": "subscribe", "trades": ["not a symbol"]})
    assert await client.recv() == [error(400)]


async def test_404_auth_timeout_closes(make_sim: SimFactory, raw: RawFactory) -> None:
    sim = await make_sim(auth_timeout=0.3)
    client = await connected(raw, sim)
    assert await client.recv() == [error(404)]
    assert await closed(client)


async def test_405_symbol_cap_keeps_previous_set(make_sim: SimFactory, raw: RawFactory) -> None:
    sim = await make_sim(symbol_cap=3)
    client = await authed(raw, sim)
    await client.send({"action": "subscribe", "trades": ["AAPL", "MSFT"]})
    await client.recv_until(lambda m: m["T"] == "subscription")
    await client.send({"action": "subscribe", "quotes": ["SPY", "QQQ"]})
    assert await client.recv_until(lambda m: m["T"] == "error") == error(405)
    state = (await sim.get("/sim/state")).json()
    assert state["connections"][0]["subscriptions"]["trades"] == ["AAPL", "MSFT"]
    assert state["connections"][0]["subscriptions"]["quotes"] == []


async def test_406_second_connection_same_key_same_endpoint(sim: Sim, raw: RawFactory) -> None:
    await authed(raw, sim)
    second = await connected(raw, sim)
    assert await second.auth() == [error(406)]
    assert await closed(second)
    other_endpoint = await authed(raw, sim, "/v2/sip")  # another endpoint is another slot
    assert other_endpoint is not None


async def test_407_slow_client_is_disconnected(make_sim: SimFactory, raw: RawFactory) -> None:
    sim = await make_sim(rate=50_000, send_buffer_bytes=256 * 1024, max_batch=500)
    client = await raw(sim.ws("/v2/iex"), use_msgpack=True, max_queue=1, compression=None)
    await client.recv()
    await client.auth()
    await client.send({"action": "subscribe", "quotes": ["*"], "trades": ["*"]})
    await asyncio.sleep(3.0)  # do not read: socket buffers fill, then the sim's queue overflows
    got, how = await drain(client, 5)
    assert how == "closed"
    assert got[-1] == error(407)
    assert sim.state.engine.connections == []


async def test_409_feed_not_entitled(make_sim: SimFactory, raw: RawFactory) -> None:
    sim = await make_sim(feeds="iex,test")
    client = await connected(raw, sim, "/v2/sip")
    assert await client.auth() == [error(409)]
    assert await closed(client)


async def test_410_412_413_on_options(sim: Sim, raw: RawFactory) -> None:
    json_client = await raw(sim.ws("/v1beta1/opra"))
    assert await json_client.recv() == [error(412)]
    assert await closed(json_client)
    client = await authed(raw, sim, "/v1beta1/indicative", mp=True)
    await client.send({"action": "subscribe", "bars": ["AAPL240315C00172500"]})
    assert await client.recv() == [error(410)]
    await client.send({"action": "subscribe", "quotes": ["*"]})
    assert await client.recv() == [error(413)]
    await client.send({"action": "subscribe", "quotes": ["AAPL240315C00172500"]})
    assert await client.recv() == [
        {"T": "subscription", "trades": [], "quotes": ["AAPL240315C00172500"]}
    ]


async def test_test_feed_prints_fakepaca(sim: Sim, raw: RawFactory) -> None:
    client = await authed(raw, sim, "/v2/test")
    await client.send({"action": "subscribe", "trades": ["FAKEPACA"]})
    trade = await client.recv_until(lambda m: m["T"] == "t")
    assert trade["S"] == "FAKEPACA"


async def test_fault_send_error_silence_and_malformed(sim: Sim, raw: RawFactory) -> None:
    client = await authed(raw, sim)
    await client.send({"action": "subscribe", "quotes": ["AAPL"]})
    await client.recv_until(lambda m: m["T"] == "q")
    await sim.post("/sim/faults", {"silence_seconds": 30})
    await drain(client, 0.3)  # what was already queued
    assert await drain(client, 1.0) == ([], "quiet")
    assert (await sim.get("/sim/faults")).json()["silent"] is True
    await sim.post("/sim/faults", {"reset": True})
    await client.recv_until(lambda m: m["T"] == "q")
    await sim.post("/sim/faults", {"malformed_frames": 1})
    assert (await drain(client, 2))[1] == "malformed"
    await sim.post("/sim/faults", {"send_error": 406})
    await client.recv_until(lambda m: m == error(406))
    assert await closed(client)
