"""The capture streams: what live subscribers get on `md.rt`/`md.delayed` is what JetStream
stored, with headers that let a consumer detect a gap per subject and read it back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
import pytest_asyncio
from market_data_hub.settings import Settings
from nats.aio.client import Client
from nats.aio.msg import Msg
from raxx_contracts import AssetClass, Channel, Path, subjects

from tests.integration.test_hub_stream import eventually, interest
from tests.support.hub import local_settings, read_capture, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "400"})


@pytest.fixture
def settings(own_nats: str, vault: Any, sim: Any) -> Settings:
    s = local_settings(own_nats, vault.addr, vault.token, sim.url, sim.ws_url,
                       options_enabled=False, delay_seconds=1)  # fmt: skip
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    return s


@pytest_asyncio.fixture
async def nc(own_nats: str) -> AsyncIterator[Client]:
    c = await nats.connect(own_nats)
    yield c
    await c.drain()


def check_chain(msgs: list[Msg], stream: str) -> dict[str, list[int]]:
    """Assert the republish headers and the per-subject `Nats-Last-Sequence` chain; return the
    stream sequences seen per public subject."""
    seqs: dict[str, list[int]] = defaultdict(list)
    last_seen_any = 0
    for m in msgs:
        h = m.headers or {}
        assert h[subjects.HDR_STREAM] == stream
        assert h[subjects.HDR_SUBJECT] == subjects.to_capture(m.subject)
        assert h[subjects.HDR_TIME_STAMP]
        seq, last = int(h[subjects.HDR_SEQUENCE]), int(h[subjects.HDR_LAST_SEQUENCE])
        assert seq > last_seen_any  # one stream, in order
        last_seen_any = seq
        mine = seqs[m.subject]
        if mine:  # no gap on a live connection: the previous one on this subject is the last
            assert last == mine[-1], (m.subject, seq, last, mine[-3:])
        assert last < seq
        mine.append(seq)
    return seqs


async def test_subscribers_get_republished_messages_with_a_per_subject_sequence_chain(
    settings: Settings, nc: Client
) -> None:
    rt: list[Msg] = []
    delayed: list[Msg] = []

    async def on_rt(m: Msg) -> None:
        rt.append(m)

    async def on_delayed(m: Msg) -> None:
        delayed.append(m)

    await nc.subscribe(subjects.path_root(Path.RT, AssetClass.STOCKS), cb=on_rt)
    await nc.subscribe(subjects.path_root(Path.DELAYED, AssetClass.STOCKS), cb=on_delayed)
    async with running_hub(settings):
        reply = await interest(nc, symbols=SYMBOLS, lease_seconds=60)
        assert not reply.rejected
        await eventually(lambda: len(delayed) >= 300, timeout=30)

    rt_stream = subjects.capture_stream(Path.RT, AssetClass.STOCKS)
    delayed_stream = subjects.capture_stream(Path.DELAYED, AssetClass.STOCKS)
    rt_seqs = check_chain(rt, rt_stream)
    check_chain(delayed, delayed_stream)
    assert len(rt_seqs) >= 2 * len(SYMBOLS)  # quotes, trades (and bars) of both symbols
    # what came out live is exactly what is stored, sequence for sequence
    subject = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
    stored = await read_capture(nc, rt_stream, subjects.to_capture(subject))
    live = [m for m in rt if m.subject == subject]
    assert live
    by_seq = {int(m.headers[subjects.HDR_SEQUENCE]): m.data for m in stored}  # type: ignore[index]
    for m in live:
        assert by_seq[int(m.headers[subjects.HDR_SEQUENCE])] == m.data  # type: ignore[index]
    # a gap is read back from its Nats-Last-Sequence: drop one live message and recover it
    second = live[1]
    last = int(second.headers[subjects.HDR_LAST_SEQUENCE])  # type: ignore[index]
    recovered = await read_capture(nc, rt_stream, subjects.to_capture(subject), last)
    assert recovered[0].data == live[0].data
    assert recovered[1].data == second.data
    # the delayed path carries every real-time message (same payloads, in order)
    delayed_payloads = [m.data for m in delayed]
    rt_payloads = [m.data for m in rt]
    assert delayed_payloads == rt_payloads[: len(delayed_payloads)]
    # ... each naming the real-time message it delays
    rt_by_payload = {m.data: m.headers[subjects.HDR_SEQUENCE] for m in rt}  # type: ignore[index]
    for m in delayed:
        assert m.headers[subjects.HDR_SOURCE_SEQUENCE] == rt_by_payload[m.data]  # type: ignore[index]
