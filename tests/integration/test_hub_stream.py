"""market-data-hub against real nats-server (JetStream), OpenBao and alpaca-sim: the stream side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from market_data_hub.adapters.market_clock import MarketClock
from market_data_hub.app import Deps
from market_data_hub.settings import Settings
from nats.aio.client import Client
from raxx_contracts import (
    AssetClass,
    Bar,
    Channel,
    ErrorReply,
    InterestReply,
    InterestRequest,
    Quote,
    Trade,
    decode,
    encode,
    subjects,
)

from tests.support.hub import (
    local_settings,
    request_interest,
    running_hub,
    write_alpaca_key,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "400"})


@pytest.fixture
def settings(own_nats: str, vault: Any, sim: Any) -> Settings:
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False
    )
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    return s


@pytest_asyncio.fixture
async def nc(own_nats: str) -> AsyncIterator[Client]:
    c = await nats.connect(own_nats)
    yield c
    await c.drain()


async def sim_state(sim: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{sim.url}/sim/state")
        return dict(r.json())


async def sim_fault(sim: Any, **body: Any) -> None:
    async with httpx.AsyncClient() as c:
        (await c.post(f"{sim.url}/sim/faults", json=body)).raise_for_status()


async def interest(nc: Client, user: str = "test-user", **kw: Any) -> InterestReply:
    tier = kw.pop("tier", "pro_plus")
    req = InterestRequest(consumer_id=kw.pop("consumer_id", "c1"), **kw)
    msg = await request_interest(nc, encode(req), user=user, tier=tier)
    return decode(InterestReply, msg.data)


async def eventually(
    pred: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper with its own deadline
    every: float = 0.1,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


def upstream_subs(state: dict[str, Any], endpoint: str = "/v2/iex") -> list[dict[str, Any]]:
    return [
        c["subscriptions"]
        for c in state["connections"]
        if c["endpoint"] == endpoint and c["authenticated"]
    ]


async def test_interest_subscribes_union_and_publishes_decodable_contracts(
    settings: Settings, sim: Any, nc: Client
) -> None:
    got: list[tuple[str, bytes]] = []
    headers: list[dict[str, str] | None] = []

    async def on_msg(m: Any) -> None:
        got.append((m.subject, m.data))
        headers.append(m.headers)

    await nc.subscribe("md.rt.>", cb=on_msg)
    async with running_hub(settings):
        r1 = await interest(nc, consumer_id="a", symbols=("AAPL", "BRK.B"))
        r2 = await interest(nc, consumer_id="b", symbols=("MSFT",), channels=(Channel.QUOTES,))
        assert r1.accepted == ("AAPL", "BRK.B")
        assert not r1.rejected
        assert (r2.subscribed, r2.symbol_cap) == (3, 30)
        assert r2.lease_expires_at is not None

        async def subscribed() -> bool:
            subs = upstream_subs(await sim_state(sim))
            return len(subs) == 1 and sorted(subs[0]["quotes"]) == ["AAPL", "BRK.B", "MSFT"]

        await eventually(subscribed)
        subs = upstream_subs(await sim_state(sim))[0]
        assert sorted(subs["trades"]) == ["AAPL", "BRK.B"]
        await eventually(lambda: {s for s, _ in got} >= {
            subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "BRK.B"),
            subjects.rt(AssetClass.STOCKS, Channel.TRADES, "AAPL"),
        })  # fmt: skip
        for subj, data in got[:200]:
            model = Quote if ".quotes." in subj else Trade
            decoded = decode(model, data)
            assert subj == subjects.rt(
                AssetClass.STOCKS, Channel(subj.split(".")[3]), decoded.symbol
            )
        assert not [s for s, _ in got if s.endswith(".MSFT") and ".trades." in s]


async def test_cap_rejects_with_symbol_limit_and_bad_input_is_rejected(
    settings: Settings, nc: Client
) -> None:
    settings = settings.model_copy(update={"symbol_cap": 2})
    async with running_hub(settings):
        # one pro_plus user may hold half the cap: two users fill it
        r = await interest(nc, user="a", symbols=("AAPL", "MSFT"))
        assert r.accepted == ("AAPL",)
        assert r.rejected[0].reason == "user_symbol_quota"
        assert (await interest(nc, user="b", symbols=("MSFT",))).accepted == ("MSFT",)
        r = await interest(nc, user="c", symbols=("AMZN", "bad sym", "SPY", "MSFT"))
        assert r.accepted == ("MSFT",)  # already held: no new slot
        reasons = {x.symbol: x.reason for x in r.rejected}
        assert reasons == {
            "AMZN": "symbol_limit",
            "bad sym": "invalid_symbol",
            "SPY": "symbol_limit",
        }
        assert "2 of 2" in next(x.message for x in r.rejected if x.symbol == "AMZN")
        r = await interest(nc, asset_class=AssetClass.OPTIONS, symbols=("AAPL240315C00172500",),
                           channels=(Channel.BARS,))  # fmt: skip
        assert r.rejected[0].reason == "invalid_channel"
        msg = await request_interest(nc, b'{"nonsense": 1}')
        err = decode(ErrorReply, msg.data)
        assert err.error == "bad_request"
        assert "nonsense" not in err.message  # a code and a safe message, details in the log


async def test_lease_lapse_unsubscribes_after_linger(
    settings: Settings, sim: Any, nc: Client
) -> None:
    async with running_hub(settings):
        await interest(nc, symbols=("AAPL",), lease_seconds=5)
        await eventually(lambda: _has(sim, "AAPL"))
        t0 = time.monotonic()
        await eventually(lambda: _has(sim, "AAPL", want=False), timeout=15)
        # lease 5 s + linger 1 s: never before the lease ran out
        assert time.monotonic() - t0 >= 4.0


async def _has(sim: Any, symbol: str, want: bool = True) -> bool:
    subs = upstream_subs(await sim_state(sim))
    present = bool(subs) and symbol in subs[0]["quotes"]
    return present == want


class _OpenMarket(MarketClock):
    """The market is open whatever the time (a gap found while closed waits for the open)."""

    def __init__(self) -> None:
        pass

    def is_open(self, now_s: float) -> bool | None:
        return True

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_drop_reconnects_resubscribes_and_backfills_bars(
    settings: Settings, sim: Any, nc: Client
) -> None:
    bars: list[Bar] = []

    async def on_bar(m: Any) -> None:
        bars.append(decode(Bar, m.data))

    await nc.subscribe(subjects.market_pattern(channel=Channel.BARS), cb=on_bar)
    async with running_hub(settings, Deps(market_clock=_OpenMarket())) as app:
        await interest(nc, symbols=("AAPL", "MSFT"), channels=(Channel.QUOTES, Channel.BARS))
        await eventually(lambda: _has(sim, "MSFT"))
        before = _bar_calls(await sim_state(sim))
        await sim_fault(sim, drop_connections=True)

        async def backfilled() -> bool:
            return _bar_calls(await sim_state(sim)) > before

        await eventually(backfilled, timeout=15)
        subs = upstream_subs(await sim_state(sim))
        assert len(subs) == 1
        assert sorted(subs[0]["bars"]) == ["AAPL", "MSFT"]
        text = await _metrics(app)
        assert 'mdh_upstream_reconnects_total{asset="stocks"' in text
        # The simulator keeps history only for regular sessions: outside them the gap has no
        # bars to recover. Whatever was recovered is marked as backfill.
        await asyncio.sleep(1.0)
        n = next(
            float(x.split()[1])
            for x in text.splitlines()
            if x.startswith("mdh_backfill_bars_total ")
        )
        assert sum(b.backfill for b in bars) >= (1 if n else 0)
    assert all(b.kind == "minute" for b in bars if b.backfill)


def _bar_calls(state: dict[str, Any]) -> int:
    return sum(v for k, v in state["rest_calls"].items() if "bars" in k)


async def _metrics(app: Any) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return (await c.get("/metrics")).text


async def test_malformed_frames_are_counted_and_skipped(
    settings: Settings, sim: Any, nc: Client
) -> None:
    got: list[bytes] = []

    async def on_msg(m: Any) -> None:
        got.append(m.data)

    await nc.subscribe("md.rt.>", cb=on_msg)
    async with running_hub(settings) as app:
        await interest(nc, symbols=("AAPL",))
        await eventually(lambda: got)
        await sim_fault(sim, malformed_frames=3)
        await asyncio.sleep(0.3)
        n = len(got)
        await eventually(lambda: len(got) > n + 5)
        text = await _metrics(app)
        assert 'mdh_upstream_malformed_total{asset="stocks"} 3.0' in text
        assert len(upstream_subs(await sim_state(sim))) == 1


async def test_publish_batch_delivers_what_publish_would_in_order(nc: Client) -> None:
    from market_data_hub.adapters.nats import publish_batch

    got: list[tuple[str, bytes]] = []
    headers: list[dict[str, str] | None] = []

    async def on_msg(m: Any) -> None:
        got.append((m.subject, m.data))
        headers.append(m.headers)

    await nc.subscribe("md.rt.>", cb=on_msg)
    await nc.flush()
    batch = [
        (subjects.rt(AssetClass.STOCKS, Channel.QUOTES, s), f'{{"i":{i}}}'.encode())
        for i, s in enumerate(["AAPL", "BRK.B", "MSFT"] * 200)
    ]
    before = nc.stats["out_msgs"]
    await publish_batch(nc, batch)
    with pytest.raises(nats.errors.MaxPayloadError):  # oversize: nc.publish's own check
        await publish_batch(nc, [(batch[0][0], b"x" * (nc.max_payload + 1))])
    await eventually(lambda: len(got) >= len(batch), timeout=5)
    assert got == batch
    assert headers == [None] * len(batch)
    assert nc.stats["out_msgs"] - before >= len(batch)

    got.clear()
    headers.clear()
    seqs = [10**12 + i for i in range(len(batch))]
    await publish_batch(nc, batch, seqs)  # HPUBs: the delayed path's source sequences
    await eventually(lambda: len(got) >= len(batch), timeout=5)
    assert got == batch
    assert headers == [{subjects.HDR_SOURCE_SEQUENCE: str(q)} for q in seqs]
