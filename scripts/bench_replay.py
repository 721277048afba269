# ruff: noqa: E501, ASYNC220 - a benchmark script: long lines, one fixed-argv child process
"""Benchmark md-replay: replay from the archive as fast as possible to one consumer.

One bounded run (about a minute) on free ports: nats-server (JetStream) and md-replay
(`python -m md_replay`, its own process) as children; this process records a session into
the capture stream, archives it (Parquet, zstd, file store), then replays it three times with
`raxx_md_client.replay` (frames unpacked, no model decoding) and counts market-data messages
(not frames). Baseline, measured in the same run: reading the same Parquet files alone
(pyarrow, payload column to Python bytes), the floor of any replay from this archive.
Figures: median of 3 runs with the range; archive bytes per million messages.
Writes .bench/replay.json and .bench/replay.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from market_data_hub.adapters.nats import capture_config
from market_data_hub.settings import Settings as HubSettings
from md_replay.adapters.capture import CaptureReader
from md_replay.adapters.store import FsspecStore
from md_replay.archive import Archiver
from md_replay.domain import session_date
from md_replay.metrics import Metrics
from raxx_contracts import AssetClass, Channel, ReplayEnd, subjects
from raxx_contracts import Path as MdPath
from raxx_contracts.timestamps import format_epoch_ns
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from raxx_md_client.replay import ReplayMessage, replay

OUT = Path(".bench")
MESSAGES = int(os.environ.get("BENCH_REPLAY_MESSAGES", "300000"))
SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "AMD", "SPY", "QQQ"]
RUNS = 3
TARGET = 100_000
TOKEN = "B" * 24


def _quote(symbol: str, i: int, ts: int) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1, "symbol": symbol, "timestamp": format_epoch_ns(ts),
            "feed": "sip", "bid_price": f"{100 + (i % 500) / 100:.2f}", "bid_size": 100 + i % 9,
            "bid_exchange": "Q", "ask_price": f"{100.01 + (i % 500) / 100:.2f}",
            "ask_size": 200 + i % 7, "ask_exchange": "P", "conditions": ["R"], "tape": "C",
        }
    )  # fmt: skip


async def record(url: str) -> None:
    """Publish MESSAGES quotes (core NATS, as the hub does) and wait until all are stored."""
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    js = nc.jetstream()
    for path in MdPath:
        for asset in AssetClass:  # the capture streams, as the hub declares them
            await js.add_stream(capture_config(path, asset, HubSettings()))
    subs = {
        s: subjects.to_capture(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, s)) for s in SYMBOLS
    }
    for i in range(MESSAGES):
        sym = SYMBOLS[i % len(SYMBOLS)]
        await nc.publish(subs[sym], _quote(sym, i, time.time_ns()))
        if i % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    stream = subjects.capture_stream(MdPath.RT, AssetClass.STOCKS)
    for _ in range(600):
        if (await js.stream_info(stream)).state.messages >= MESSAGES:
            break
        await asyncio.sleep(0.1)
    await nc.close()


async def archive(url: str, store_url: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        archiver = Archiver(FsspecStore(store_url), CaptureReader(nc), Metrics(), 30)
        t = time.perf_counter()
        manifest = await archiver.archive(session_date(time.time_ns()), lambda _line: None)
        manifest["seconds"] = time.perf_counter() - t
    finally:
        await nc.close()
    return manifest


def parquet_baseline(root: Path) -> float:
    """msg/s reading every Parquet file of the session and its payloads as Python bytes."""
    files = sorted(root.rglob("*.parquet"))
    t = time.perf_counter()
    n = 0
    for f in files:
        table = pq.read_table(f, columns=["seq", "publish_ts_ns", "payload", "subject"])
        table = pa.concat_tables([table]).sort_by("seq")
        n += len(table["payload"].to_pylist())
    return n / (time.perf_counter() - t)


async def replay_once(url: str) -> tuple[int, float, float, int]:
    """(messages, seconds from request to end, seconds from first message to end, frames)."""
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_U.{TOKEN}", pending_size=64 * 1024 * 1024)
    n = 0
    end: ReplayEnd | None = None
    first = 0.0
    t = time.perf_counter()
    try:
        async for item in replay(
            nc, "pro", TOKEN, session_date(time.time_ns()), SYMBOLS,
            channels=(Channel.QUOTES,), decode_events=False,
        ):  # fmt: skip
            if isinstance(item, ReplayMessage):
                if not n:
                    first = time.perf_counter()
                n += 1
            elif isinstance(item, ReplayEnd):
                end = item
        done = time.perf_counter()
    finally:
        await nc.close()
    if end is None or end.reason != "complete":
        raise RuntimeError(f"replay did not complete: {end}")
    return n, done - t, done - first, end.frames


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values)), "min": round(min(values)),
            "max": round(max(values))}  # fmt: skip


async def run() -> dict[str, Any]:
    started: list[servers.Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            srv = servers.start_nats(tmp / "nats")
            started.append(srv)
            t = time.perf_counter()
            await record(srv.url)
            record_s = time.perf_counter() - t
            store = tmp / "archive"
            manifest = await archive(srv.url, f"file://{store}")
            baseline = [parquet_baseline(store) for _ in range(RUNS)]
            port = free_port()
            env = {**os.environ, "MDR_NATS_URL": srv.url, "MDR_HTTP_PORT": str(port),
                   "MDR_ARCHIVE_URL": f"file://{store}", "MDR_ARCHIVE_SCHEDULE": "false"}  # fmt: skip
            log = (tmp / "md-replay.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "md_replay"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)  # fmt: skip
            try:
                async with httpx.AsyncClient() as http:
                    for _ in range(300):
                        try:
                            if (
                                await http.get(f"http://127.0.0.1:{port}/readyz")
                            ).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await asyncio.sleep(0.1)
                runs = [await replay_once(srv.url) for _ in range(RUNS)]
            finally:
                proc.terminate()
                proc.wait(timeout=20)
        finally:
            servers.stop_all(started)
    total = manifest["messages"]
    if any(n != total for n, *_ in runs):
        raise RuntimeError(f"a replay lost or added messages: {[r[0] for r in runs]} != {total}")
    rates = [n / streaming for n, _, streaming, _ in runs]
    end_to_end = [n / whole for n, whole, _, _ in runs]
    result = {
        "messages": total,
        "replay_msgs_per_s": spread(rates),
        "replay_end_to_end_msgs_per_s": spread(end_to_end),
        "parquet_read_baseline_msgs_per_s": spread(baseline),
        "replay_vs_baseline": round(statistics.median(rates) / statistics.median(baseline), 3),
        "target_msgs_per_s": TARGET,
        "meets_target": statistics.median(rates) >= TARGET,
        "archive_bytes": manifest["bytes"],
        "archive_bytes_per_million_msgs": round(manifest["bytes"] * 1e6 / total),
        "archive_seconds": round(manifest["seconds"], 2),
        "detail": {
            "runs": [
                {
                    "messages": n,
                    "seconds": round(w, 3),
                    "streaming_seconds": round(s, 3),
                    "frames": f,
                }
                for n, w, s, f in runs
            ],
            "note": "replay_msgs_per_s: first message to end marker; end_to_end adds the "
            "request's preparation (reading and merging the Parquet files)",
            "record_seconds": round(record_s, 2),
            "symbols": len(SYMBOLS),
            "payload_bytes_mean": round(
                statistics.mean(len(_quote("AAPL", i, 0)) for i in range(100))
            ),
            "date": session_date(time.time_ns()).isoformat(),
        },
    }
    return result


def chart(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["Parquet read alone", "replay streaming", "replay end to end"]
    meds = [result["parquet_read_baseline_msgs_per_s"], result["replay_msgs_per_s"],
            result["replay_end_to_end_msgs_per_s"]]  # fmt: skip
    a.bar(names, [m["median"] for m in meds], color=["grey", "tab:blue", "tab:cyan"],
          yerr=[[m["median"] - m["min"] for m in meds], [m["max"] - m["median"] for m in meds]])  # fmt: skip
    a.axhline(TARGET, color="red", linestyle="--", label="target 100,000 msg/s")
    a.set_ylabel("market-data msg/s (median of 3, range)")
    a.set_yscale("log")
    a.legend()
    a.set_title("replay from the archive, max speed")
    b.bar(["archive"], [result["archive_bytes_per_million_msgs"] / 1e6], color="tab:green")
    b.set_ylabel("MB per million messages (Parquet, zstd)")
    b.set_title(f"{result['messages']:,} messages archived in {result['archive_seconds']} s")
    fig.tight_layout()
    fig.savefig(OUT / "replay.png", dpi=100)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    result = asyncio.run(run())
    (OUT / "replay.json").write_text(json.dumps(result, indent=2))
    chart(result)
    print(json.dumps({k: v for k, v in result.items() if k != "detail"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
