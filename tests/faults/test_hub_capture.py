"""The capture is as complete as what subscribers saw: quotes flow through the hub at a steady
rate while nats-server is stopped (SIGTERM) and restarted; every message a live subscriber got
on `md.rt` is in the real-time capture stream, and so comes out on the delayed path.

Before the capture streams republished, the hub published `md.rt` itself and a stream captured
it: on a shutdown the last ~50 ms reached subscribers but were never stored (nor delayed).
Before the delay line resumed from what its delayed stream stored, what it released into the
dying connection (~200 ms at a 1 s delay) was never delayed: it saved progress past them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from raxx_contracts import AssetClass, InterestRequest, encode, subjects
from raxx_contracts import Path as MdPath
from raxx_devstack import servers

from tests.faults.test_hub_faults import hub_settings, nats_server, restart, until
from tests.support.hub import request_interest, running_hub

pytestmark = pytest.mark.integration
__all__ = ["nats_server"]
RT_STREAM = subjects.capture_stream(MdPath.RT, AssetClass.STOCKS)
DELAYED_STREAM = subjects.capture_stream(MdPath.DELAYED, AssetClass.STOCKS)
SYMBOLS = ("AAPL", "MSFT", "SPY")


@pytest.fixture
def sim(alpaca_sim_factory: Any) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "1000"})


async def stored(nc: Client, stream: str) -> list[bytes]:
    """Every payload stored in `stream` up to its last sequence now (an ephemeral pull
    consumer; the stream keeps growing while quotes flow)."""
    js = nc.jetstream()
    last = (await js.stream_info(stream)).state.last_seq
    psub = await js.pull_subscribe(
        "", stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )  # fmt: skip
    out: list[bytes] = []
    try:
        while True:
            try:
                msgs = await psub.fetch(1000, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                return out
            for m in msgs:
                if m.metadata.sequence.stream > last:
                    return out
                out.append(m.data)
                if m.metadata.sequence.stream == last:
                    return out
    finally:
        await psub.unsubscribe()


async def test_every_message_a_subscriber_saw_before_a_nats_shutdown_is_captured(
    nats_server: servers.Server, vault: Any, sim: Any, tmp_path: Path
) -> None:
    s = hub_settings(nats_server.url, vault, sim, delay_seconds=1)
    seen: list[bytes] = []

    async def on_rt(m: Msg) -> None:
        seen.append(m.data)

    tap = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        await tap.subscribe(subjects.path_root(MdPath.RT, AssetClass.STOCKS), cb=on_rt)
        async with running_hub(s):
            req = InterestRequest(consumer_id="capture-tap", symbols=SYMBOLS, lease_seconds=600)
            await request_interest(tap, encode(req), timeout=10)
            await until(lambda: len(seen) > 1000, 30, "quotes flowing")

            nats_server.stop()  # SIGTERM while quotes flow
            before = len(seen)
            restart(nats_server, tmp_path)
            await until(lambda: len(seen) > before + 1000, 30, "flowing again after the restart")
            reader = await nats.connect(nats_server.url)
            try:
                snapshot = list(seen)  # all of it is stored by now: a subscriber gets stored ones
                rt = Counter(await stored(reader, RT_STREAM))
                missing = Counter(snapshot) - rt
                report = (f"seen {len(snapshot)} live ({before} before the stop), stored "
                          f"{rt.total()}, missing from the capture {missing.total()}")  # fmt: skip
                print(f"\n{report}")  # noqa: T201
                assert missing.total() == 0

                want = set(snapshot)

                async def delayed_complete() -> bool:
                    return not want - set(await stored(reader, DELAYED_STREAM))

                await until(delayed_complete, 30, "every seen message out on the delayed path")
                delayed = Counter(x for x in await stored(reader, DELAYED_STREAM) if x in want)
                assert delayed == Counter(snapshot), "released twice"
            finally:
                await reader.close()
    finally:
        await tap.close()
    await asyncio.sleep(0)
