"""Benchmark alpaca-sim's stream send rate.

Starts the simulator as a subprocess on a free port at a high `--rate`, connects one raw
websocket client (msgpack, like alpaca-py) that subscribes to trades and quotes of many symbols,
counts the data messages it receives for a fixed time, then stops everything. Prints the
figure and writes `.bench/sim.json` (`send_msgs_per_s` plus details) and `.bench/sim.png`.

    uv run python scripts/bench_sim.py [--seconds 8] [--rate 250000] [--symbols 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"


def start_sim(rate: float, port_file: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "alpaca_sim", "--host", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--rate", str(rate), "--log-level", "WARNING",
        "--send-buffer-bytes", str(256 * 1024 * 1024),
    ]  # fmt: skip
    env = os.environ | {"SIM_MAX_BATCH": "5000", "SIM_TICK_MS": "10"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 (our own CLI)


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


async def wait_port(port_file: Path, proc: subprocess.Popen[bytes], seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"alpaca-sim exited early with {proc.returncode}")
        text = await asyncio.to_thread(_read, port_file)
        if text:
            return int(text)
        await asyncio.sleep(0.05)
    raise SystemExit("alpaca-sim did not report its port in time")


async def measure(port: int, symbols: int, seconds: float, compression: bool) -> dict[str, object]:
    names = [f"S{i:04d}" for i in range(symbols)]
    headers = {"Content-Type": "application/msgpack"}
    async with connect(
        f"ws://127.0.0.1:{port}/v2/iex",
        additional_headers=headers,
        compression="deflate" if compression else None,
        max_size=None,
        max_queue=64,
    ) as ws:
        if msgpack.unpackb(await ws.recv())[0]["msg"] != "connected":
            raise SystemExit("no connected frame")
        await ws.send(msgpack.packb({"action": "auth", "key": "sim-key", "secret": "sim-secret"}))
        if msgpack.unpackb(await ws.recv())[0]["msg"] != "authenticated":
            raise SystemExit("auth refused")
        await ws.send(msgpack.packb({"action": "subscribe", "trades": names, "quotes": names}))
        while msgpack.unpackb(await ws.recv())[0]["T"] != "subscription":
            pass
        warm_end = time.perf_counter() + 1.0  # warm-up: read (and drop) so no backlog builds up
        while time.perf_counter() < warm_end:
            await ws.recv()
        series: list[int] = []
        total = frames = 0
        start = time.perf_counter()
        bucket_end = start + 1.0
        bucket = 0
        end = start + seconds
        while (now := time.perf_counter()) < end:
            try:
                frame = await asyncio.wait_for(ws.recv(), max(end - now, 0.001))
            except TimeoutError:
                break
            n = len(msgpack.unpackb(frame))
            total += n
            frames += 1
            bucket += n
            while time.perf_counter() >= bucket_end:
                series.append(bucket)
                bucket = 0
                bucket_end += 1.0
        elapsed = time.perf_counter() - start
    return {
        "messages": total,
        "frames": frames,
        "seconds": round(elapsed, 3),
        "send_msgs_per_s": round(total / elapsed, 1),
        "per_second": series,
        "msgs_per_frame": round(total / max(frames, 1), 1),
    }


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["per_second"]
    if not isinstance(series, list):
        raise TypeError("per_second must be a list")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(1, len(series) + 1), series, color="#3b7dd8")
    ax.axhline(100_000, color="#d83b3b", linestyle="--", label="target 100k msg/s")
    ax.set_xlabel("second")
    ax.set_ylabel("messages received")
    ax.set_title(f"alpaca-sim stream send rate: {result['send_msgs_per_s']:,.0f} msg/s")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=float, default=250_000)
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--no-compression", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = start_sim(args.rate, port_file)
        try:
            port = await wait_port(port_file, proc)
            result = await asyncio.wait_for(
                measure(port, args.symbols, args.seconds, not args.no_compression),
                timeout=args.seconds + 30,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    result |= {
        "configured_rate": args.rate,
        "symbols": args.symbols,
        "compression": not args.no_compression,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "sim.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, OUT / "sim.png")
    print(
        f"alpaca-sim sent {result['messages']:,} messages in {result['seconds']} s: "
        f"{result['send_msgs_per_s']:,.0f} msg/s ({result['msgs_per_frame']} per frame, "
        f"compression {'on' if result['compression'] else 'off'})"
        " -> .bench/sim.json, .bench/sim.png"
    )


if __name__ == "__main__":
    asyncio.run(main())
