"""Two tier-gate replicas (one PostgreSQL, one operator-mode nats-server, one shared durable
BILLING consumer): a downgrade processed by one replica is enforced by the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import nats.aio.msg
import pytest
import pytest_asyncio
from raxx_contracts import AssetClass, Channel, subjects
from raxx_devstack.ports import free_port
from tier_gate.deps import Runtime

from tests.integration.fixtures_tier_gate import (
    StackFactory,
    TierGateStack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack_factory"]

AAPL_RT = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
Replicas = Callable[..., Awaitable[tuple[TierGateStack, TierGateStack]]]


def _runtime(stack: TierGateStack) -> Runtime:
    assert stack._uvicorn is not None
    rt: Runtime = stack._uvicorn.config.app.state.runtime
    return rt


@pytest_asyncio.fixture
async def replicas(tier_gate_stack_factory: StackFactory) -> AsyncIterator[Replicas]:
    """`await replicas(**settings)` -> (A, B): two tier-gate apps on the same servers."""
    extra: list[TierGateStack] = []

    async def make(**overrides: Any) -> tuple[TierGateStack, TierGateStack]:
        a = await tier_gate_stack_factory(**overrides)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        b = TierGateStack(
            a.out, a.init, a.settings.model_copy(update={"http_port": port}), a.nats_server,
            base, httpx.AsyncClient(base_url=base, timeout=10),
        )  # fmt: skip
        extra.append(b)
        await b.start_tier_gate()
        return a, b

    yield make
    for b in extra:
        await b.stop_tier_gate()
        await b.http.aclose()


async def _stop_consuming(stack: TierGateStack) -> None:
    """This replica stops pulling from the shared durable (the other one gets every event)."""
    assert stack._uvicorn is not None
    broker = stack._uvicorn.config.app.state.broker
    durable = [s for s in broker.subscribers if getattr(s, "stream", None) is not None]
    assert durable, "no JetStream subscriber found"
    for sub in durable:
        await sub.stop()
    await asyncio.sleep(1.2)  # an outstanding pull request (expires after 1 s) is gone


async def _refused(stack: TierGateStack, creds: str) -> bool:
    try:
        nc = await stack.connect_user(creds, connect_timeout=2)
    except Exception:  # nats-py raises several types here
        return True
    await nc.close()
    return False


async def test_downgrade_consumed_by_replica_a_cuts_a_credential_from_replica_b(
    replicas: Replicas,
) -> None:
    a, b = await replicas(revocation_repush_seconds=0.2)  # both re-push from PostgreSQL often
    await _stop_consuming(b)
    user = unique_user()
    await a.publish_tier(user, "pro", version=1)
    for _ in range(50):
        tok = await b.token(user)
        if tok["tier"] == "pro":
            break
        await asyncio.sleep(0.1)
    assert tok["tier"] == "pro"
    got: list[bytes] = []
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async def cb(msg: nats.aio.msg.Msg) -> None:
        got.append(msg.data)

    nc = await b.connect_user(tok["nats"]["creds"], closed_cb=on_closed)
    await nc.subscribe(AAPL_RT, cb=cb)
    await nc.flush()
    hub = await a.hub_publisher()
    await hub.publish(AAPL_RT, b"1")
    await hub.flush()
    await asyncio.sleep(0.2)
    assert got == [b"1"]

    started = time.monotonic()
    await a.publish_tier(user, "free", version=2)
    await asyncio.wait_for(closed.wait(), 5)
    assert time.monotonic() - started < 5
    assert "revoked" in str(nc.last_error).lower(), nc.last_error
    fresh = await b.token(user)  # immediately: B heard the change itself
    assert fresh["tier"] == "free"
    assert fresh["subjects"]["paths"]["stocks"] == "delayed"
    # A applied and revoked; B (whose cache had pro) did not consume the event.
    assert "tg_credentials_revoked_total 1.0" in (await a.http.get("/metrics")).text
    assert "tg_billing_events_applied_total 0.0" in (await b.http.get("/metrics")).text
    # Both replicas keep re-pushing the set from PostgreSQL: the revocation is never undone.
    await asyncio.sleep(1.0)
    assert await _refused(b, tok["nats"]["creds"])
    await hub.publish(AAPL_RT, b"2")
    await hub.flush()
    await asyncio.sleep(0.2)
    assert got == [b"1"]
    await hub.close()


async def test_issuance_racing_a_downgrade_on_another_replica_never_leaves_a_live_pro_key(
    replicas: Replicas,
) -> None:
    a, b = await replicas()
    user = unique_user()
    ident = await a.identity(user, "pro")  # dev route: A records pro (no NATS event at all)
    assert (await b.token(user))["tier"] == "pro"  # B's cache now holds pro

    async def request() -> dict[str, Any]:
        resp = await b.http.post("/v1/tokens", headers={"Authorization": f"Bearer {ident}"})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    # B issues concurrently while A downgrades through its dev route: B never hears of it
    # over NATS, only PostgreSQL (the revocation and the commit-time check) can catch it.
    racing = [asyncio.create_task(request()) for _ in range(40)]
    await asyncio.sleep(0.005)
    await a.identity(user, "free")
    issued = await asyncio.gather(*racing)
    after = await b.token(user)
    assert after["tier"] == "free"  # B's stale cache did not win
    pro = [t for t in issued if t["tier"] == "pro"]
    for tok in pro:  # every pro credential B handed out is dead
        assert await _refused(b, tok["nats"]["creds"]), "a pro credential survived"
    free = next(t for t in [*issued, after] if t["tier"] == "free")
    nc = await b.connect_user(free["nats"]["creds"])
    await nc.close()
