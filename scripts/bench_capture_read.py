"""How md-replay should read a session from a capture stream: an ephemeral pull consumer
(AckNone, start time, what `CaptureReader` does) or batched direct gets (`next_by_subj`,
`batch`, what a user's client can do with only direct-get rights). Same stream, same messages,
median of 3 runs each, alternated. Prints msg/s; writes .bench/capture_read.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from md_replay.adapters.capture import CaptureReader
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from raxx_contracts import AssetClass, Channel, subjects
from raxx_contracts import Path as MdPath
from raxx_devstack import servers

OUT = Path(".bench")
N = int(os.environ.get("BENCH_CAPTURE_MESSAGES", "100000"))
STREAM = subjects.capture_stream(MdPath.RT, AssetClass.STOCKS)
ROOT = subjects.capture_root(MdPath.RT, AssetClass.STOCKS)


async def fill(nc: Any) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=STREAM, subjects=[ROOT], storage=StorageType.FILE, allow_direct=True)
    )
    body = b'{"symbol":"AAPL","timestamp":"2026-11-25T15:00:00.000000001Z","bid_price":"1"}' * 3
    subj = subjects.to_capture(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL"))
    for i in range(N):
        await nc.publish(subj, body)
        if i % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    for _ in range(600):
        if (await js.stream_info(STREAM)).state.messages >= N:
            return
        await asyncio.sleep(0.1)


async def by_consumer(nc: Any) -> int:
    reader = CaptureReader(nc, batch=2000)
    n = 0
    async for batch in reader.read(STREAM, [ROOT], 0, 2**62):
        n += len(batch)
    return n


async def by_direct_get(nc: Any, batch: int = 2000) -> int:
    """Batched direct gets from sequence 1 on (`next_by_subj`), until the stream is done."""
    n = 0
    seq = 1
    while True:
        inbox = nc.new_inbox()
        done = asyncio.get_running_loop().create_future()
        got: list[int] = []

        async def on(msg: Msg, got: list[int] = got, done: asyncio.Future[None] = done) -> None:
            hdr = msg.headers or {}
            if hdr.get("Status") in ("204", "404", "408"):
                if not done.done():
                    done.set_result(None)
                return
            got.append(int(hdr["Nats-Sequence"]))
            _ = (hdr["Nats-Time-Stamp"], msg.data)

        sub = await nc.subscribe(inbox, cb=on)
        req = json.dumps({"seq": seq, "next_by_subj": ROOT, "batch": batch}).encode()
        await nc.publish(subjects.direct_get(STREAM), req, reply=inbox)
        await asyncio.wait_for(done, 30)
        await sub.unsubscribe()
        if not got:
            return n
        n += len(got)
        seq = got[-1] + 1


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-capread-") as tmp:
        srv = servers.start_nats(Path(tmp) / "nats")
        try:
            nc = await nats.connect(srv.url, pending_size=64 * 1024 * 1024)
            await fill(nc)
            rates: dict[str, list[float]] = {"pull_consumer": [], "direct_get_batch": []}
            for _ in range(3):
                for name, fn in (
                    ("pull_consumer", by_consumer),
                    ("direct_get_batch", by_direct_get),
                ):
                    t = time.perf_counter()
                    n = await fn(nc)
                    rates[name].append(n / (time.perf_counter() - t))
                    if n != N:
                        raise RuntimeError(f"{name} read {n} of {N}")
            await nc.close()
        finally:
            servers.stop_all([srv])
    return {
        "messages": N,
        **{
            k: {"median": round(statistics.median(v)), "min": round(min(v)), "max": round(max(v))}
            for k, v in rates.items()
        },
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    result = asyncio.run(run())
    (OUT / "capture_read.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
