"""md-replay through a nats-server outage (the real process stopped and started again on the
same port and store): `/readyz` says the bus is down while it is, a replay cut by the outage
ends and releases its task, consumer and gauge instead of hanging, and replays work again
after the restart without restarting md-replay.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx
import nats
import pytest
from md_replay.app import create_app
from md_replay.domain import session_date
from nats.aio.msg import Msg
from raxx_contracts import AssetClass, ReplayEnd, ReplayRequest, decode, encode, subjects
from raxx_contracts import Path as MdPath
from raxx_devstack import servers
from raxx_md_client.replay import ReplayMessage, replay

from tests.faults.test_hub_faults import nats_server, restart, until
from tests.integration.md_replay_fixtures import TOKEN, capture_streams, publish_tape, settings

pytestmark = pytest.mark.integration
__all__ = ["nats_server"]
N = 3000
RT_STOCKS = subjects.capture_stream(MdPath.RT, AssetClass.STOCKS)


def today() -> dt.date:
    return session_date(time.time_ns())


async def full_replay(url: str) -> int:
    """A whole replay of today's AAPL tape as a user; the number of messages it returned."""
    user = await nats.connect(url, inbox_prefix=f"_INBOX_U.{TOKEN}")
    try:
        got = 0
        async for item in replay(user, "pro", TOKEN, today(), ["AAPL"]):
            got += isinstance(item, ReplayMessage)
        return got
    finally:
        await user.drain()


async def test_a_nats_outage_ends_replays_cleanly_and_replay_works_after_it(
    nats_server: servers.Server, tmp_path: Path
) -> None:
    admin = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = admin.jetstream()
    await capture_streams(js)
    await publish_tape(js, ["AAPL"], N)
    s = settings(nats_server.url, archive_url="memory://outage", window=2, ack_every=1,
                 frame_records=50, ack_timeout_seconds=1.0)  # fmt: skip
    app = create_app(s)  # its own connection: the kit's, which reconnects forever
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mdr") as http:
            assert (await http.get("/readyz")).status_code == 200
            assert await full_replay(nats_server.url) == N

            # a replay in flight: two frames delivered and never acked, then the outage
            user = await nats.connect(
                nats_server.url, inbox_prefix=f"_INBOX_U.{TOKEN}", max_reconnect_attempts=-1
            )
            frames: list[Msg] = []
            ends: list[ReplayEnd] = []

            async def on(msg: Msg) -> None:
                if (msg.headers or {}).get("Raxx-Replay") == "end":
                    ends.append(decode(ReplayEnd, msg.data))
                else:
                    frames.append(msg)

            deliver = f"_INBOX_U.{TOKEN}.cut"
            await user.subscribe(deliver, cb=on)
            req = ReplayRequest(replay_id="cut", date=today(), symbols=("AAPL",), deliver=deliver)
            await user.request(subjects.replay("pro", TOKEN), encode(req), timeout=5)
            await until(lambda: len(frames) >= 2, 10, "first frames")
            state = app.state.md
            assert state.replayer.running

            nats_server.stop()

            async def not_ready() -> bool:
                r = await http.get("/readyz")
                return r.status_code == 503 and not r.json()["checks"]["nats"]["ok"]

            await until(not_ready, 10, "/readyz 503 for the bus")
            # while the bus is down the cut replay ends by itself (no ack can arrive)
            await until(lambda: not state.replayer.running, 10, "the cut replay ended")
            gauge = app.state.metrics.registry.get_sample_value("mdr_replays_active")
            assert gauge == 0
            assert not state.replayer.reader.open_consumers

            restart(nats_server, tmp_path)

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            back = await until(ready, 20, "/readyz back after the restart")
            assert await full_replay(nats_server.url) == N  # same tape, same md-replay process
            print(f"\nmd-replay ready {back:.1f} s after nats-server came back")  # noqa: T201
            await user.close()

    async def no_consumers() -> bool:
        info = await js.stream_info(RT_STOCKS)
        return info.state.consumer_count == 0

    await until(no_consumers, 40, "no replay consumer left on the capture stream")
    await admin.close()
