"""The CLI on a free port, and the minute-mark bar logic of the ticker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from alpaca_sim.engine import Target
from alpaca_sim.live import MINUTE_NS
from alpaca_sim.settings import Settings
from alpaca_sim.state import SimState
from alpaca_sim.ticks import half_minute_mark, minute_mark


async def test_cli_port_zero_prints_url_and_writes_port_file(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpaca_sim", "--port", "0", "--port-file", str(port_file),
        "--rate", "10", "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert line.startswith("alpaca-sim listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port_file.read_text().strip() == str(port)
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert r.json() == {"status": "ready"}
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) is not None


class Sink:
    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []

    def send_data(self, msgs: list[dict[str, Any]]) -> None:
        self.msgs += msgs


def test_minute_mark_emits_bar_daily_bar_and_updated_bar() -> None:
    sim = SimState(Settings())
    sink = Sink()
    tgt = Target("stocks", "AAPL", sim.live.state("AAPL"))
    for ch in ("bars", "dailyBars", "updatedBars"):
        tgt.conns[ch].append(sink)  # type: ignore[arg-type]
    tgt.finish()
    sim.engine.targets = [tgt]
    minute = 29_000_000 * MINUTE_NS
    for i, price in enumerate([10.0, 12.0, 9.0, 11.0]):
        tgt.state.trade(price, 100, minute + i * 1_000_000_000)
    minute_mark(sim.engine, np.random.default_rng(0), minute + MINUTE_NS)
    bar = next(m for m in sink.msgs if m["T"] == "b")
    assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["n"]) == (10, 12, 9, 11, 400, 4)
    assert bar["t"].seconds * 1_000_000_000 == minute
    assert any(m["T"] == "d" for m in sink.msgs)
    for _ in range(40):  # an updated bar comes with probability 0.3 per half-minute mark
        half_minute_mark(sim.engine, np.random.default_rng(_), minute + MINUTE_NS)
    updated = [m for m in sink.msgs if m["T"] == "u"]
    assert updated
    assert updated[0]["t"] == bar["t"]
    assert updated[0]["v"] > 400
