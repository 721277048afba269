"""The eod-settler process as `make run` starts it: key from Vault, scheduler, HTTP API."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import hvac
import pytest
from raxx_devstack.ports import free_port

from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.integration.test_settler_helpers import Consumer

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")


def latest_closed_session(sim_url: str) -> dt.date:
    today = dt.datetime.now(NY).date()
    headers = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}
    cal = httpx.get(
        f"{sim_url}/v2/calendar",
        params={"start": (today - dt.timedelta(days=10)).isoformat(), "end": today.isoformat()},
        headers=headers,
    ).json()
    now = dt.datetime.now(NY)
    closed = [
        c["date"] for c in cal
        if dt.datetime.combine(
            dt.date.fromisoformat(c["date"]), dt.time.fromisoformat(c["close"]), NY
        ) <= now
    ]  # fmt: skip
    return dt.date.fromisoformat(closed[-1])


def test_service_reads_key_from_vault_settles_due_session_and_serves_it(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim, vault: Vault, tmp_path: Path
) -> None:
    client = hvac.Client(url=vault.addr, token=vault.token)
    client.secrets.kv.v2.create_or_update_secret(
        path="raxx/alpaca/market-data",
        secret={"key_id": "sim-key", "secret_key": "sim-secret"},
        mount_point="secret",
    )
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("EOD_")
    } | {
        "EOD_ENV": "dev", "EOD_NATS_URL": own_nats, "EOD_DATABASE_URL": postgres_dsn,
        "EOD_VAULT__ADDR": vault.addr, "EOD_VAULT__TOKEN": vault.token,
        "EOD_ALPACA_DATA_URL": alpaca_sim.url, "EOD_ALPACA_TRADING_URL": alpaca_sim.url,
        "EOD_SYMBOLS": "AAPL,MSFT,BRK.B", "EOD_SETTLE_LAG_SECONDS": "0",
        "EOD_CATCHUP_SESSIONS": "1", "EOD_HTTP_PORT": str(port),
    }  # fmt: skip
    log = (tmp_path / "settler.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "eod_settler"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    day = latest_closed_session(alpaca_sim.url)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                r = httpx.get(f"{base}/v1/settles/{day.isoformat()}")
            except httpx.TransportError:
                continue
            if r.status_code == 200:
                body = r.json()
                break
        assert body is not None, (tmp_path / "settler.log").read_text()[-3000:]
        assert body["count"] == 3
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert "eod_last_success_date_timestamp_seconds" in metrics
        assert httpx.get(f"{base}/v1/settles/not-a-date").status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    mbt = Consumer(own_nats)

    async def consume() -> None:
        await mbt.ensure()
        await mbt.consume()

    asyncio.run(consume())
    assert sorted(s.symbol for s in mbt.seen.settles) == ["AAPL", "BRK.B", "MSFT"]
    assert [d.count for d in mbt.seen.done] == [3]
