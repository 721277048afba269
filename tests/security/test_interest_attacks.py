"""A hostile user against the hub's interest responder (issue 10 points 1 and 3).

Real servers: tier-gate's operator-mode nats-server (JetStream), OpenBao, alpaca-sim, and a hub
running with the identities `tier_gate init` made (`hub` for data and state, `hub-responder`
for user requests). Users are real tier-gate credentials; the server enforces their rights.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from market_data_hub.settings import Settings
from nats.aio.client import Client
from nats.aio.msg import Msg
from raxx_contracts import (
    AssetClass,
    Channel,
    InterestReply,
    InterestRequest,
    decode,
    encode,
    subjects,
)

from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.integration.fixtures_tier_gate import (
    TierGateStack,
    Violations,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)
from tests.support.hub import local_settings, running_hub, write_alpaca_key

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]

CAP = 10


@dataclass
class User:
    """A connected user and the subjects its token response granted."""

    nc: Client
    interest: str
    inbox: str
    violations: Violations

    async def ask(self, timeout: float = 10, **kw: Any) -> InterestReply:  # noqa: ASYNC109
        req = InterestRequest(consumer_id=kw.pop("consumer_id", "c1"), **kw)
        msg = await self.nc.request(self.interest, encode(req), timeout=timeout)
        return decode(InterestReply, msg.data)


async def _running_hub(
    stack: TierGateStack, vault: Vault, alpaca_sim: AlpacaSim, **extra: Any
) -> AsyncIterator[Any]:
    settings: Settings = local_settings(
        stack.nats_url, vault.addr, vault.token, alpaca_sim.url, alpaca_sim.ws_url,
        options_enabled=False, symbol_cap=CAP,
        nats_creds=str(stack.creds("hub")),
        nats_responder_creds=str(stack.creds("hub-responder")),
        **extra,
    )  # fmt: skip
    write_alpaca_key(vault.addr, vault.token, settings.vault.path)
    async with running_hub(settings) as app:
        yield app


@pytest_asyncio.fixture
async def hub(
    tier_gate_stack: TierGateStack, vault: Vault, alpaca_sim: AlpacaSim
) -> AsyncIterator[Any]:
    async for app in _running_hub(tier_gate_stack, vault, alpaca_sim):
        yield app


@pytest_asyncio.fixture
async def unthrottled_hub(
    tier_gate_stack: TierGateStack, vault: Vault, alpaca_sim: AlpacaSim
) -> AsyncIterator[Any]:
    """A hub without the per-user request rate: the storage quotas alone face a flood."""
    async for app in _running_hub(
        tier_gate_stack, vault, alpaca_sim,
        interest_requests_per_min=1e9, interest_burst=1_000_000, interest_user_in_flight=1000,
    ):  # fmt: skip
        yield app


async def _user(stack: TierGateStack, tier: str, name: str | None = None) -> User:
    tok = await stack.token(name or unique_user(), tier)
    granted = tok["subjects"]
    violations = Violations()
    nc = await stack.connect_user(
        tok["nats"]["creds"], violations, inbox_prefix=granted["inbox_prefix"]
    )
    return User(nc, granted["publish"][0], granted["inbox_prefix"], violations)


async def _metrics(app: Any) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        return (await c.get("/metrics")).text


async def _eventually(pred: Callable[[], Any], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _kv_snapshot(admin: Client, bucket: str) -> dict[str, tuple[bytes, int]]:
    kv = await admin.jetstream().key_value(bucket)
    out: dict[str, tuple[bytes, int]] = {}
    for key in await kv.keys():
        entry = await kv.get(key)
        out[key] = (entry.value or b"", entry.revision or 0)
    return out


async def test_a_reply_subject_is_never_a_write_primitive(
    tier_gate_stack: TierGateStack, hub: Any
) -> None:
    stack = tier_gate_stack
    admin = await stack.service("dev-admin")
    seen: list[tuple[str, bytes]] = []

    async def watch(msg: Msg) -> None:
        seen.append((msg.subject, msg.data))

    await admin.subscribe(">", cb=watch)
    await admin.flush()
    mallory = await _user(stack, "free")
    bob = await _user(stack, "free")
    assert (await mallory.ask(symbols=("AAPL",))).accepted == ("AAPL",)
    leader_before = await _kv_snapshot(admin, "MDH_LEADER")
    interest_before = await _kv_snapshot(admin, "MDH_INTEREST")
    assert leader_before["upstream"][0] == hub.state.hub.settings.replica_id.encode()
    today = dt.datetime.now(dt.UTC).date()
    targets = [
        "$KV.MDH_INTEREST.slots.stocks",
        f"$KV.MDH_INTEREST.owner.stocks.{subjects.user_token('victim')}",
        "$KV.MDH_LEADER.upstream",
        "$KV.MDH_LATEST.rt.stocks.quotes.AAPL",
        subjects.settle_done(today),
        subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL"),
        subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL"),
        f"{bob.inbox}.stolen",
        "_INBOX.service.reply",
    ]
    body = encode(InterestRequest(consumer_id="c1", symbols=("AAPL",)))
    for target in targets:
        await mallory.nc.publish(mallory.interest, body, reply=target)
    await mallory.nc.flush()
    # Requests are handled in order: once a proper request is answered, so were the others.
    assert (await mallory.ask(symbols=("AAPL",))).accepted == ("AAPL",)
    await admin.flush()
    await asyncio.sleep(0.5)
    # The hub itself writes some of these subjects (KV, market data); a reply never lands.
    written = [s for s, data in seen if s in targets and b'"symbol_cap"' in data]
    assert written == [], written
    leader_after = await _kv_snapshot(admin, "MDH_LEADER")
    assert leader_after["upstream"][0] == leader_before["upstream"][0]
    interest_after = await _kv_snapshot(admin, "MDH_INTEREST")
    assert set(interest_after) == set(interest_before)
    assert not [k for k, (v, _) in interest_after.items() if b'"symbol_cap"' in v]
    text = await _metrics(hub)
    assert f'mdh_interest_requests_total{{outcome="foreign_reply"}} {len(targets)}.0' in text
    assert hub.state.hub.leadership.is_leader
    # The narrowed hub identity still runs everything: upstream, delay line, state in KV.
    await _eventually(lambda: not hub.state.hub.readiness(), 30)
    await _eventually(lambda: any(s.startswith("md.delayed.stocks.") for s, _ in seen), 30)
    for c in (mallory.nc, bob.nc, admin):
        await c.close()


async def test_a_user_cannot_send_interest_as_another_user_or_tier(
    tier_gate_stack: TierGateStack, hub: Any
) -> None:
    stack = tier_gate_stack
    alice_id = unique_user("alice")
    alice = await _user(stack, "pro", alice_id)
    mallory = await _user(stack, "free")
    body = encode(InterestRequest(consumer_id="c1", symbols=("MSFT",), release=False))
    forged = [
        subjects.interest("pro", subjects.user_token(alice_id)),  # alice's own subject
        subjects.interest("pro_plus", subjects.user_token(alice_id)),
        subjects.interest("pro", mallory.interest.rsplit(".", 1)[1]),  # itself, higher tier
        subjects.INTEREST,  # the old shared subject
    ]
    for subject in forged:
        await mallory.nc.publish(subject, body, reply=f"{mallory.inbox}.x")
    await mallory.nc.flush()
    await _eventually(lambda: all(mallory.violations.about(s) for s in forged))
    assert all("publish" in e for e in mallory.violations.errors)
    assert (await alice.ask(symbols=("MSFT",))).subscribed == 1  # nobody else leased MSFT
    await alice.nc.close()
    await mallory.nc.close()


async def test_one_free_user_cannot_take_the_cap_and_a_pro_user_keeps_room(
    tier_gate_stack: TierGateStack, hub: Any
) -> None:
    stack = tier_gate_stack
    mallory = await _user(stack, "free")
    grab = tuple(f"S{i}" for i in range(CAP))
    r = await mallory.ask(symbols=grab, lease_seconds=3600)
    assert len(r.accepted) == 2  # free: 0.2 of the cap of 10
    assert {x.reason for x in r.rejected} == {"user_symbol_quota"}
    # more free users: together they stop at the free tier's half of the cap
    others = [await _user(stack, "free") for _ in range(3)]
    replies = [
        await u.ask(symbols=grab[2 + 2 * i : 4 + 2 * i], lease_seconds=3600)
        for i, u in enumerate(others)
    ]
    assert sum(len(x.accepted) for x in replies) == 3
    assert replies[-1].rejected[0].reason == "tier_share"
    pro = await _user(stack, "pro")
    r = await pro.ask(symbols=("AAPL",))
    assert r.accepted == ("AAPL",)
    assert not r.rejected
    for u in (mallory, pro, *others):
        await u.nc.close()


async def test_consumer_ids_past_the_quota_are_refused_and_the_hub_stays_connected(
    tier_gate_stack: TierGateStack, unthrottled_hub: Any
) -> None:
    stack, hub = tier_gate_stack, unthrottled_hub
    mallory = await _user(stack, "free")
    channels = tuple(Channel(c) for c in ("quotes", "trades", "bars", "dailybars", "statuses"))
    syms = ("AAPL", "MSFT")
    quota = 4  # free: max_consumers_per_user
    reasons: list[str] = []
    # On a single lease document, 1,500 consumer ids of 200 characters with every channel
    # grow it past the server's 1 MiB max payload; per-owner records refuse them instead.
    for start in range(0, 1500, 50):
        batch = [
            mallory.ask(consumer_id=f"{i:04d}".ljust(200, "x"), symbols=syms, channels=channels)
            for i in range(start, start + 50)
        ]
        for r in await asyncio.gather(*batch):
            reasons.extend(x.reason for x in r.rejected)
    assert len(reasons) == (1500 - quota) * len(syms)
    assert set(reasons) == {"user_consumer_quota"}
    h = hub.state.hub
    assert h.nc.is_connected
    assert h.broker.connection.is_connected
    assert "nats" not in h.readiness()
    pro = await _user(stack, "pro")
    assert (await pro.ask(symbols=("SPY",))).accepted == ("SPY",)
    await mallory.nc.close()
    await pro.nc.close()


async def test_a_user_cannot_release_another_users_lease(
    tier_gate_stack: TierGateStack, hub: Any
) -> None:
    stack = tier_gate_stack
    alice = await _user(stack, "free")
    mallory = await _user(stack, "free")
    r = await alice.ask(consumer_id="md-client-shared", symbols=("NVDA",), lease_seconds=600)
    assert r.accepted == ("NVDA",)
    assert r.subscribed == 1
    r = await mallory.ask(consumer_id="md-client-shared", symbols=("NVDA",), release=True)
    assert r.subscribed == 1  # alice's lease still holds NVDA
    r = await alice.ask(consumer_id="md-client-shared", symbols=("NVDA",), release=True)
    assert r.subscribed == 0
    await alice.nc.close()
    await mallory.nc.close()


async def test_one_users_request_flood_is_rate_limited_and_delays_no_one_else(
    tier_gate_stack: TierGateStack, hub: Any
) -> None:
    stack = tier_gate_stack
    mallory = await _user(stack, "free")
    flood = [
        mallory.nc.request(
            mallory.interest,
            encode(InterestRequest(consumer_id="m", symbols=("AAPL",))),
            timeout=10,
        )
        for _ in range(200)
    ]
    replies = await asyncio.gather(*flood)
    codes = [orjson.loads(m.data).get("error") for m in replies]
    assert codes.count("rate_limited") >= 200 - 10  # burst 10, at most 4 queued
    # Meanwhile, and right after, another user is answered at once.
    alice = await _user(stack, "free")
    t0 = time.monotonic()
    assert (await alice.ask(symbols=("IBM",))).accepted == ("IBM",)
    assert time.monotonic() - t0 < 5
    assert 'outcome="rate_limited"' in await _metrics(hub)
    await mallory.nc.close()
    await alice.nc.close()
