"""tier-gate under dependency faults: PostgreSQL stopped or frozen, NATS and OpenBao away.

Issue 14 points 2 and 3: a database outage is a fast, clear 503 with Retry-After and heals
without a restart; `/readyz` answers within a second whatever is down, stays 200 while
credentials can still be issued, and names what is degraded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

import httpx
import pytest
from raxx_contracts import subjects

from tests.faults.postgres import PrivatePostgres, private_pg
from tests.integration.fixtures.servers import Vault
from tests.integration.fixtures_tier_gate import (
    StackFactory,
    TierGateStack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)
__all__ = ["private_pg", "tier_gate_stack_factory"]


async def _issue(stack: TierGateStack, ident: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = await stack.http.post(
        "/v1/tokens", headers={"Authorization": f"Bearer {ident}"}, timeout=30
    )
    return resp, time.monotonic() - started


def _assert_fast_503(resp: httpx.Response, took: float) -> None:
    log.info("%s after %.2f s", resp.status_code, took)
    assert resp.status_code == 503, resp.text
    assert took < 5.0, f"503 took {took:.1f} s"
    assert int(resp.headers["Retry-After"]) >= 1
    body = resp.json()
    assert body["error"] == "database_unavailable"
    assert "Error" not in body["message"]  # no exception text


async def _recovers(stack: TierGateStack, ident: str, since: float) -> tuple[float, float]:
    """Poll until issuance works; return (seconds after `since`, first success latency)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp, took = await _issue(stack, ident)
        if resp.status_code == 200:
            return time.monotonic() - since, took
        assert resp.status_code == 503, resp.text
        await asyncio.sleep(0.05)
    pytest.fail("issuance did not recover within 30 s of PostgreSQL's return")


async def test_postgres_stopped_is_a_fast_503_and_heals_without_restart(
    private_pg: PrivatePostgres, tier_gate_stack_factory: StackFactory
) -> None:
    stack = await tier_gate_stack_factory(database_url=private_pg.dsn)
    ident = await stack.identity(unique_user(), "pro")
    assert (await _issue(stack, ident))[0].status_code == 200

    private_pg.stop()
    for _ in range(3):  # the first request, and every one after it: never a hang, never 500
        _assert_fast_503(*await _issue(stack, ident))
    started = time.monotonic()
    ready = await stack.http.get("/readyz")
    assert time.monotonic() - started < 1.0
    assert ready.status_code == 503
    assert "postgres" in _failing(ready.json(), critical=True)

    private_pg.start()
    back = time.monotonic()
    after, first = await _recovers(stack, ident, back)
    log.info("PostgreSQL stopped: issuing again %.2f s after it answered (first: %.0f ms)",
             after, first * 1000)  # fmt: skip
    assert after < 5.0
    deadline = time.monotonic() + 5  # readiness follows within one probe interval
    while (await stack.http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "/readyz stayed 503 after recovery"
        await asyncio.sleep(0.1)


async def test_postgres_frozen_is_a_fast_503_and_heals_when_it_thaws(
    private_pg: PrivatePostgres, tier_gate_stack_factory: StackFactory
) -> None:
    stack = await tier_gate_stack_factory(database_url=private_pg.dsn)
    ident = await stack.identity(unique_user(), "free")
    assert (await _issue(stack, ident))[0].status_code == 200

    private_pg.signal(signal.SIGSTOP)
    try:
        for _ in range(3):
            _assert_fast_503(*await _issue(stack, ident))
    finally:
        private_pg.signal(signal.SIGCONT)
    thawed = time.monotonic()
    after, first = await _recovers(stack, ident, thawed)
    log.info("PostgreSQL frozen: issuing again %.2f s after SIGCONT (first: %.0f ms)",
             after, first * 1000)  # fmt: skip
    assert after < 5.0


def _failing(body: dict[str, Any], *, critical: bool) -> dict[str, str]:
    """Failing checks of the kit's `/readyz` body: critical ones (503) or the others."""
    return {
        name: check["reason"]
        for name, check in body["checks"].items()
        if not check["ok"] and check["critical"] == critical
    }


async def _readyz_within_a_second(stack: TierGateStack) -> httpx.Response:
    started = time.monotonic()
    resp = await stack.http.get("/readyz", timeout=5)
    took = time.monotonic() - started
    assert took < 1.0, f"/readyz took {took:.2f} s"
    return resp


async def _degraded(stack: TierGateStack, name: str) -> dict[str, str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        resp = await _readyz_within_a_second(stack)
        assert resp.status_code == 200, resp.text
        degraded = _failing(resp.json(), critical=False)
        if name in degraded:
            return degraded
        await asyncio.sleep(0.2)
    pytest.fail(f"/readyz never reported {name} as degraded")


async def test_readyz_stays_ready_and_says_why_while_nats_is_stopped_or_frozen(
    tier_gate_stack_factory: StackFactory,
) -> None:
    stack = await tier_gate_stack_factory()
    ident = await stack.identity_only(unique_user())

    stack.nats_server.stop()
    degraded = await _degraded(stack, "nats")
    assert "tier changes" in degraded["nats"]
    assert (await _issue(stack, ident))[0].status_code == 200  # still issuing
    stack.restart_nats()

    pid = stack.nats_server.process.pid
    assert pid is not None
    deadline = time.monotonic() + 15
    while "nats" in _failing((await _readyz_within_a_second(stack)).json(), critical=False):
        assert time.monotonic() < deadline, "nats stayed degraded after its restart"
        await asyncio.sleep(0.2)
    os.kill(pid, signal.SIGSTOP)
    try:
        degraded = await _degraded(stack, "nats")
        assert "no answer" in degraded["nats"] or "Timeout" in degraded["nats"]
        assert (await _issue(stack, ident))[0].status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_readyz_stays_ready_while_openbao_is_frozen(
    tier_gate_stack_factory: StackFactory, vault: Vault
) -> None:
    stack = await tier_gate_stack_factory()
    ident = await stack.identity_only(unique_user())
    pid = _pid_listening_on(int(vault.addr.rsplit(":", 1)[1]))
    os.kill(pid, signal.SIGSTOP)
    try:
        degraded = await _degraded(stack, "openbao")
        assert "no answer" in degraded["openbao"]
        assert (await _issue(stack, ident))[0].status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)


def _pid_listening_on(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:`port` (from /proc, no tools needed)."""
    hexport = f"{port:04X}"
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(f":{hexport}") and parts[3] == "0A":
                    inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise LookupError(f"nothing listens on port {port}")


async def _metric(stack: TierGateStack, line: str, within: float = 30.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = (await stack.http.get("/metrics")).text
        if line in text:
            return text
        await asyncio.sleep(0.1)
    pytest.fail(f"{line!r} not in /metrics within {within:.0f} s")


async def test_a_tier_change_during_a_postgres_outage_is_applied_when_it_returns(
    private_pg: PrivatePostgres, tier_gate_stack_factory: StackFactory
) -> None:
    """The kit's ack policy on the real BILLING consumer: the database's RetryableError naks
    the event with its 2 s delay (never terms it), so it lands once PostgreSQL is back."""
    stack = await tier_gate_stack_factory(database_url=private_pg.dsn)
    user = unique_user()
    assert (await stack.token(user, "free"))["tier"] == "free"
    private_pg.stop()
    await stack.publish_tier(user, "pro", version=50)
    await asyncio.sleep(3)  # at least one delivery fails and is nak'ed meanwhile
    private_pg.start()
    await _metric(stack, "tg_billing_events_applied_total 1.0")
    assert (await stack.token(user))["tier"] == "pro"


async def test_an_undecodable_billing_event_is_dead_lettered_and_does_not_block(
    tier_gate_stack_factory: StackFactory,
) -> None:
    stack = await tier_gate_stack_factory()
    # An operator's view (dev-admin) watches the dead-letter subject: the parked message must
    # really reach the bus, which tier-gate's NATS identity must be allowed to publish.
    admin = await stack.service("dev-admin")
    parked = await admin.subscribe(subjects.dead_letter("tier-gate", ">"))
    await admin.flush()
    billing = await stack.service("billing")
    try:
        await billing.jetstream().publish("billing.tier.changed", b"{not json")
    finally:
        await billing.close()
    await _metric(
        stack,
        'tg_dead_letters_total{reason="undecodable",subject="billing.tier.changed"} 1.0',
    )
    try:
        letter = await parked.next_msg(timeout=10)
    finally:
        await admin.close()
    assert letter.subject == subjects.dead_letter("tier-gate", "billing.tier.changed")
    assert letter.data == b"{not json"
    user = unique_user()
    await stack.publish_tier(user, "pro", version=1)
    await _metric(stack, "tg_billing_events_applied_total 1.0")
    assert (await stack.token(user))["tier"] == "pro"
