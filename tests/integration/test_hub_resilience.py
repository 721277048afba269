"""market-data-hub: two replicas and failover, 406 handling, key rotation without restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from websockets.asyncio.client import connect

from tests.support.hub import local_settings, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "100"})


async def iex_sessions(sim: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as c:
        state = (await c.get(f"{sim.url}/sim/state")).json()
    return [x for x in state["connections"] if x["endpoint"] == "/v2/iex" and x["authenticated"]]


def start_replica(
    env: dict[str, str], replica: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "MDH_REPLICA_ID": replica, "MDH_HTTP_PORT": str(port)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "market_data_hub"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def role(port: int) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            r = await c.get(f"http://127.0.0.1:{port}/readyz")
            return str(r.json().get("role")) if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


@pytest.mark.timeout(300)  # two hub processes start; imports alone take 30 s on a busy 2-core box
async def test_two_replicas_hold_one_upstream_and_fail_over_within_10s(
    own_nats: str, vault: Any, sim: Any, tmp_path: Path
) -> None:
    path = "raxx/alpaca/md-failover"
    write_alpaca_key(vault.addr, vault.token, path)
    env = {
        "MDH_NATS_URL": own_nats, "MDH_VAULT__ADDR": vault.addr, "MDH_VAULT__TOKEN": vault.token,
        "MDH_VAULT__PATH": path, "MDH_ALPACA_DATA_URL": sim.url,
        "MDH_ALPACA_STREAM_URL": sim.ws_url,
        "MDH_OPTIONS_ENABLED": "false", "MDH_LEADER_TTL_SECONDS": "4", "MDH_DELAY_SECONDS": "2",
        "MDH_BACKOFF_INITIAL_SECONDS": "0.1", "MDH_BACKOFF_MAX_SECONDS": "1",
    }  # fmt: skip
    ports = {"a": free_port(), "b": free_port()}
    procs = {r: start_replica(env, r, p, tmp_path / f"{r}.log") for r, p in ports.items()}
    try:
        deadline = time.monotonic() + 120
        roles: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            roles = {r: await role(p) for r, p in ports.items()}
            if sorted(filter(None, roles.values())) == ["follower", "leader"]:
                break
            await asyncio.sleep(0.2)
        assert sorted(filter(None, roles.values())) == ["follower", "leader"], roles
        for _ in range(20):
            assert len(await iex_sessions(sim)) <= 1
            await asyncio.sleep(0.1)
        leader = next(r for r, x in roles.items() if x == "leader")
        follower = next(r for r in ports if r != leader)
        old = {s["id"] for s in await iex_sessions(sim)}
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait()
        killed = time.monotonic()
        while time.monotonic() - killed < 12:
            sessions = await iex_sessions(sim)
            assert len(sessions) <= 1
            if sessions and sessions[0]["id"] not in old:
                break
            await asyncio.sleep(0.1)
        took = time.monotonic() - killed
        assert took < 10, f"failover took {took:.1f} s"
        assert await role(ports[follower]) == "leader"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(10)


async def test_406_waits_out_the_slot_instead_of_hammering(
    own_nats: str, vault: Any, sim: Any
) -> None:
    s = local_settings(own_nats, vault.addr, vault.token, sim.url, sim.ws_url,
                       options_enabled=False, slot_busy_seconds=3)  # fmt: skip
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    squatter = await connect(f"{sim.ws_url}/v2/iex")
    await squatter.recv()
    await squatter.send(msgpack.packb({"action": "auth", "key": "sim-key", "secret": "sim-secret"}))
    await squatter.recv()
    try:
        async with running_hub(s) as app:
            await asyncio.sleep(3.5)
            attempts = app.state.metrics.upstream_connects.labels("stocks")._value.get()
            # slot_busy 3 s = three spaced attempts per window; plain backoff (0.1 s) would
            # have tried a dozen times
            assert 2 <= attempts <= 5, f"{attempts} connection attempts in 3.5 s"
            assert len(await iex_sessions(sim)) == 1
            await squatter.close()
            t0 = time.monotonic()
            while not app.state.hub.upstreams[0].authenticated:
                assert time.monotonic() - t0 < 5
                await asyncio.sleep(0.1)
    finally:
        await squatter.close()


async def test_rotated_key_is_picked_up_without_restart(
    own_nats: str, vault: Any, sim: Any
) -> None:
    s = local_settings(
        own_nats, vault.addr, vault.token, sim.url, sim.ws_url, options_enabled=False
    )
    write_alpaca_key(vault.addr, vault.token, s.vault.path, key_id="old-key", secret="revoked")
    async with running_hub(s) as app:
        hub = app.state.hub
        await asyncio.sleep(1.5)
        assert not hub.upstreams[0].authenticated
        assert "upstream_stocks" in hub.readiness()
        write_alpaca_key(vault.addr, vault.token, s.vault.path)
        t0 = time.monotonic()
        while not hub.upstreams[0].authenticated:
            assert time.monotonic() - t0 < 8, "rotated key not picked up"
            await asyncio.sleep(0.1)
        sessions = await iex_sessions(sim)
        assert [x["key"] for x in sessions] == ["sim-key"]
        assert hub.keys.key.version == 2
        assert hub.readiness() == {}


async def test_not_ready_when_the_lease_bucket_refuses_writes(
    vault: Any, sim: Any, tmp_path: Path
) -> None:
    """A replica that can never take the lease is not ready (it is no standby either)."""
    conf = tmp_path / "nats.conf"
    conf.write_text(
        "authorization { users = [ { user: hub, password: pw, permissions: {"
        ' publish: { allow: [">"], deny: ["$KV.MDH_LEADER.>"] },'
        ' subscribe: { allow: [">"] } } } ] }'
    )
    srv = servers.start_nats(tmp_path / "nats", config=conf)
    try:
        url = f"nats://hub:pw@127.0.0.1:{srv.port}"
        s = local_settings(url, vault.addr, vault.token, sim.url, sim.ws_url,
                           options_enabled=False, leader_ttl_seconds=2)  # fmt: skip
        write_alpaca_key(vault.addr, vault.token, s.vault.path)
        async with running_hub(s) as app:
            hub = app.state.hub
            await asyncio.sleep(s.leader_ttl_seconds + 1.0)  # rounds have been tried and failed
            down = hub.readiness()
            assert "leader_lease" in down, down
            assert "no election round" not in down["leader_lease"], down
            assert not hub.leadership.is_leader
            assert "nats" not in hub.readiness()  # connected: the bucket is what is broken
    finally:
        srv.stop()
