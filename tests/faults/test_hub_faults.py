"""market-data-hub under faults of real processes: nats-server restarted or frozen, a hub replica
frozen or killed, a leader task crashing, the upstream silent in market hours.

Each test prints its measured recovery time (`pytest -s` shows them; the hub README quotes them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from market_data_hub.adapters.market_clock import MarketClock
from market_data_hub.app import Deps, Hub
from market_data_hub.delay_line import DelayLine
from market_data_hub.settings import Settings
from nats.aio.client import Client
from raxx_contracts import AssetClass, InterestRequest, encode
from raxx_devstack import servers
from raxx_devstack.ports import free_port

from tests.integration.test_hub_resilience import start_replica
from tests.support.hub import local_settings, request_interest, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
TTL = 3.0


@pytest.fixture
def sim(alpaca_sim_factory: Callable[..., Any]) -> Any:
    return alpaca_sim_factory(env={"SIM_RATE": "200"})


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[servers.Server]:
    """A private nats-server this test may stop, restart (same port and state) and freeze."""
    srv = servers.start_nats(tmp_path / "nats")
    yield srv
    pid = srv.process.pid
    if pid is not None and srv.process.alive():
        os.kill(pid, signal.SIGCONT)
    srv.stop()


def restart(srv: servers.Server, tmp_path: Path) -> None:
    """Start nats-server again on the same port and state directory (in place)."""
    srv.stop()
    srv.process = servers.start_nats(tmp_path / "nats", port=srv.port).process


class Tap:
    """A plain NATS client that leases AAPL and counts what arrives on rt and delayed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rt: list[float] = []
        self.delayed: list[float] = []
        self.nc: Client | None = None

    async def start(self) -> None:
        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

        async def on_rt(_m: Any) -> None:
            self.rt.append(time.monotonic())

        async def on_delayed(_m: Any) -> None:
            self.delayed.append(time.monotonic())

        await self.nc.subscribe("md.rt.stocks.*.AAPL", cb=on_rt)
        await self.nc.subscribe("md.delayed.stocks.*.AAPL", cb=on_delayed)

    async def lease(self) -> None:
        assert self.nc is not None
        req = InterestRequest(consumer_id="fault-tap", symbols=("AAPL",), lease_seconds=600)
        await request_interest(self.nc, encode(req), timeout=10)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    def flowing_since(self, t: float) -> bool:
        return any(x > t for x in self.rt) and any(x > t for x in self.delayed)


@pytest_asyncio.fixture
async def tap(nats_server: servers.Server) -> AsyncIterator[Tap]:
    t = Tap(nats_server.url)
    await t.start()
    yield t
    await t.close()


async def until(pred: Callable[[], Any], timeout: float, what: str) -> float:  # noqa: ASYNC109
    """Poll `pred` until true; return the seconds it took (AssertionError after `timeout`)."""
    t0 = time.monotonic()
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def hub_settings(url: str, vault: Any, sim: Any, **kw: Any) -> Settings:
    s = local_settings(url, vault.addr, vault.token, sim.url, sim.ws_url,
                       options_enabled=False, leader_ttl_seconds=TTL, **kw)  # fmt: skip
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    return s


async def leading_and_flowing(hub: Hub, tap: Tap, since: float) -> bool:
    return bool(hub.leadership and hub.leadership.is_leader) and tap.flowing_since(since)


# -- nats-server restarted or frozen under one hub -------------------------------------------


async def test_hub_leads_again_and_publishes_after_a_nats_restart(
    nats_server: servers.Server, tap: Tap, vault: Any, sim: Any, tmp_path: Path
) -> None:
    s = hub_settings(nats_server.url, vault, sim)
    async with running_hub(s) as app:
        hub: Hub = app.state.hub
        await tap.lease()
        await until(lambda: leading_and_flowing(hub, tap, 0), 20, "first lead")

        nats_server.stop()
        await asyncio.sleep(TTL + 1)  # long enough to lose the lease
        down = hub.readiness()
        assert "reconnecting" in down.get("nats", ""), down
        assert "permissions" not in str(down), down
        assert not hub.leadership.is_leader  # type: ignore[union-attr]

        restart(nats_server, tmp_path)
        back = time.monotonic()
        took = await until(
            lambda: leading_and_flowing(hub, tap, back), 30, "lead + rt + delayed after restart"
        )
        await until(lambda: hub.readiness() == {}, 15, "ready after restart")
        print(f"\nre-lead with rt and delayed data {took:.1f} s after nats-server came back")  # noqa: T201


async def test_hub_leads_again_and_publishes_after_a_5s_nats_freeze(
    nats_server: servers.Server, tap: Tap, vault: Any, sim: Any
) -> None:
    s = hub_settings(nats_server.url, vault, sim)
    pid = nats_server.process.pid
    assert pid is not None
    async with running_hub(s) as app:
        hub: Hub = app.state.hub
        await tap.lease()
        await until(lambda: leading_and_flowing(hub, tap, 0), 20, "first lead")
        changes = hub.metrics.leader_changes.labels("follower")._value.get()

        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            asked = time.monotonic()
            down = hub.readiness()  # no I/O: answers at once, server frozen or not
            assert time.monotonic() - asked < 1.0
            await asyncio.sleep(5 - (time.monotonic() - t0))
            down = hub.readiness()
            assert "leader_lease" in down or "nats" in down, down
            assert "permissions" not in str(down), down
        finally:
            os.kill(pid, signal.SIGCONT)
        thawed = time.monotonic()
        took = await until(
            lambda: leading_and_flowing(hub, tap, thawed), 30, "lead + rt + delayed after freeze"
        )
        # the freeze did cost the lease (otherwise this test proves nothing)
        assert hub.metrics.leader_changes.labels("follower")._value.get() > changes
        print(f"\nre-lead with rt and delayed data {took:.1f} s after a 5 s nats-server freeze")  # noqa: T201


# -- a leader task that crashes, the upstream silent in market hours -------------------------


async def test_a_crashed_leader_task_is_restarted(
    nats_server: servers.Server, tap: Tap, vault: Any, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test hook (not production code): the stocks delay line's first two runs crash."""
    real_run = DelayLine.run
    crashes: list[int] = []

    async def crashing_run(self: DelayLine) -> None:
        if self.asset is AssetClass.STOCKS and len(crashes) < 2:
            crashes.append(1)
            await asyncio.sleep(0.2)
            raise RuntimeError("injected delay-line crash")
        await real_run(self)

    monkeypatch.setattr(DelayLine, "run", crashing_run)
    s = hub_settings(nats_server.url, vault, sim)
    async with running_hub(s) as app:
        hub: Hub = app.state.hub
        await tap.lease()
        await until(lambda: leading_and_flowing(hub, tap, 0), 30, "delayed data after crashes")
        assert len(crashes) == 2
        health = {h.name: h for h in hub.supervisor.health()}
        assert health["delay-line-stocks"].starts == 3
        assert "injected delay-line crash" in (health["delay-line-stocks"].last_error or "")
        assert health["delay-line-options"].starts == 1


async def test_a_task_that_cannot_be_kept_alive_fails_readyz_and_healthz(
    nats_server: servers.Server, vault: Any, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def always_crashes(self: DelayLine) -> None:
        raise RuntimeError("delay stream gone")

    monkeypatch.setattr(DelayLine, "run", always_crashes)
    s = hub_settings(nats_server.url, vault, sim, task_give_up_after=4)
    async with running_hub(s) as app:
        hub: Hub = app.state.hub
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as http:
            task = "task:delay-line-stocks"
            await until(lambda: task in hub.liveness(), 30, "given up")
            r = await http.get("/readyz")
            assert r.status_code == 503
            assert "delay stream gone" in r.json()["checks"][task]["reason"]
            r = await http.get("/healthz")
            assert r.status_code == 503
            assert "delay stream gone" in r.json()["down"][task]


class FixedMarket(MarketClock):
    """Test double: the market is open (or closed) whatever the time."""

    def __init__(self, is_open: bool) -> None:
        self.open = is_open

    def is_open(self, now_s: float) -> bool | None:
        return self.open

    async def run(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("market_open", [True, False])
async def test_leader_with_a_silent_upstream_in_market_hours_is_not_ready(
    nats_server: servers.Server, tap: Tap, vault: Any, sim: Any, market_open: bool
) -> None:
    s = hub_settings(nats_server.url, vault, sim, watchdog_seconds=4)
    async with running_hub(s, Deps(market_clock=FixedMarket(market_open))) as app:
        hub: Hub = app.state.hub
        await tap.lease()
        await until(lambda: leading_and_flowing(hub, tap, 0), 20, "first lead")
        async with httpx.AsyncClient() as c:
            (await c.post(f"{sim.url}/sim/faults", json={"silence_seconds": 30})).raise_for_status()
        if market_open:
            await until(lambda: "upstream_stocks" in hub.readiness(), 15, "silence reported")
            assert "during market hours" in hub.readiness()["upstream_stocks"]
        else:
            await asyncio.sleep(s.watchdog_seconds + 3)
            assert hub.readiness() == {}


# -- two hub processes: freeze the leader, then kill the new one ------------------------------


async def role(port: int) -> str | None:
    """The role a replica reports on /readyz (ready or not), None when it does not answer."""
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            r = await c.get(f"http://127.0.0.1:{port}/readyz")
            return str(r.json().get("role"))
    except (httpx.HTTPError, ValueError):
        return None


async def ready_leader(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            r = await c.get(f"http://127.0.0.1:{port}/readyz")
            return r.status_code == 200 and r.json().get("role") == "leader"
    except (httpx.HTTPError, ValueError):
        return False


@pytest.mark.timeout(300)  # two hub processes start (imports are slow on a busy 2-core box)
async def test_failover_on_a_frozen_leader_and_fail_back_when_the_other_dies(
    nats_server: servers.Server, vault: Any, sim: Any, tmp_path: Path
) -> None:
    path = "raxx/alpaca/md-faults"
    write_alpaca_key(vault.addr, vault.token, path)
    env = {
        "MDH_NATS_URL": nats_server.url, "MDH_VAULT__ADDR": vault.addr,
        "MDH_VAULT__TOKEN": vault.token, "MDH_VAULT__PATH": path, "MDH_VAULT__POLL_SECONDS": "1",
        "MDH_ALPACA_DATA_URL": sim.url, "MDH_ALPACA_STREAM_URL": sim.ws_url,
        "MDH_ALPACA_TRADING_URL": sim.url, "MDH_OPTIONS_ENABLED": "false",
        "MDH_LEADER_TTL_SECONDS": str(TTL), "MDH_DELAY_SECONDS": "2",
        "MDH_BACKOFF_INITIAL_SECONDS": "0.1", "MDH_BACKOFF_MAX_SECONDS": "1",
        "MDH_SLOT_BUSY_SECONDS": "1.5",
    }  # fmt: skip
    ports = {"a": free_port(), "b": free_port()}
    procs = {r: start_replica(env, r, p, tmp_path / f"{r}.log") for r, p in ports.items()}
    try:
        roles: dict[str, str | None] = {}

        async def settled() -> bool:
            roles.update({r: await role(p) for r, p in ports.items()})
            return sorted(filter(None, roles.values())) == ["follower", "leader"]

        await until(settled, 120, "one leader, one follower")  # slow imports on a busy box
        first = next(r for r, x in roles.items() if x == "leader")
        other = next(r for r in ports if r != first)
        await until(lambda: ready_leader(ports[first]), 30, "first leader ready")

        # 1. freeze the leader: the other takes the lease once it expires
        procs[first].send_signal(signal.SIGSTOP)
        frozen = time.monotonic()

        async def other_leads() -> bool:
            return await role(ports[other]) == "leader"

        failover = await until(other_leads, TTL + 10, "failover after SIGSTOP")
        procs[first].send_signal(signal.SIGCONT)

        # the thawed replica finds its lease gone and stands by (and can lead again later)
        async def first_follows() -> bool:
            return await role(ports[first]) == "follower"

        await until(first_follows, 15, "thawed ex-leader steps down")
        await until(lambda: ready_leader(ports[other]), 30, "new leader holds the upstream")

        # 2. kill the new leader: leadership comes back to the first replica
        procs[other].send_signal(signal.SIGKILL)
        procs[other].wait(10)
        killed = time.monotonic()

        async def first_leads() -> bool:
            return await role(ports[first]) == "leader"

        try:
            failback = await until(first_leads, TTL + 10, "fail-back after SIGKILL")
        except AssertionError:
            async with httpx.AsyncClient(timeout=2) as c:
                for path in ("/readyz", "/healthz"):
                    r = await c.get(f"http://127.0.0.1:{ports[first]}{path}")
                    print(path, r.status_code, r.text)  # noqa: T201
            raise
        await until(lambda: ready_leader(ports[first]), 30, "fail-back leader holds the upstream")
        ready_after = time.monotonic() - killed
        print(  # noqa: T201 - the measured figures, shown with -s
            f"\nfailover after SIGSTOP {failover:.1f} s (lease TTL {TTL:.0f} s, frozen "
            f"{time.monotonic() - frozen:.0f} s ago); fail-back after SIGKILL {failback:.1f} s, "
            f"upstream authenticated {ready_after:.1f} s after the kill"
        )
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
