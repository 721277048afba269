"""JetStream's ingest queue: a burst of core publishes into a capture stream is fully stored.

The hub publishes its capture (`mdcap.*`) with core NATS; the capture stream stores and
republishes it. nats-server (2.12+) queues core publishes into a stream and DROPS what arrives
while the queue holds `max_buffered_msgs` messages or `max_buffered_size` bytes (defaults 10,000
and 128 MB): a dropped message gets no sequence, so no consumer can see the gap. Every config we
write raises both (`raxx_devstack.servers.jetstream_block`, tier-gate's init, the helm values).
With the defaults this test stores about half of the burst (400k -> ~214k measured here)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import nats
import pytest
from market_data_hub.adapters.nats import capture_config
from raxx_contracts import AssetClass, Channel, Path, subjects

from tests.support.hub import local_settings

pytestmark = pytest.mark.integration

BURST = 300_000


async def test_core_publish_burst_into_capture_stream_is_fully_stored(own_nats: str) -> None:
    settings = local_settings(own_nats, "http://127.0.0.1:1", "t", "http://127.0.0.1:1", "ws://x")
    nc = await nats.connect(own_nats)
    try:
        js = nc.jetstream(timeout=30)
        cfg = capture_config(Path.RT, AssetClass.STOCKS, settings)
        await js.add_stream(cfg)
        caps = [
            subjects.to_capture(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, s)).encode()
            for s in ("AAPL", "MSFT", "NVDA")
        ]
        payload = b"x" * 250
        # the whole burst in one write on a raw connection: as fast as a client can flood
        flood = b"".join(
            b"PUB %s %d\r\n%s\r\n" % (caps[i % 3], len(payload), payload) for i in range(BURST)
        )
        url = urlsplit(own_nats)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n' + flood + b"PING\r\n")
        await writer.drain()
        while not (await reader.readline()).startswith(b"PONG"):
            pass
        writer.close()
        # bounded poll: until everything is stored, or the stream stops growing for 5 s
        deadline, last, still_since = time.monotonic() + 120, -1, time.monotonic()
        while time.monotonic() < deadline:
            state = (await js.stream_info(str(cfg.name))).state
            if state.last_seq == BURST:
                break
            if state.last_seq != last:
                last, still_since = state.last_seq, time.monotonic()
            elif time.monotonic() - still_since > 5:
                break
            await asyncio.sleep(0.2)
        assert (state.messages, state.last_seq) == (BURST, BURST)
    finally:
        await nc.close()
