"""The NATS server, not tier-gate, enforces what each tier's credential may do."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from raxx_contracts import AssetClass, Channel, subjects

from tests.integration.fixtures_tier_gate import (
    TierGateStack,
    Violations,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]

AAPL_RT = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
AAPL_DELAYED = subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
OPT = "AAPL240315C00172500"
OPT_RT = subjects.rt(AssetClass.OPTIONS, Channel.QUOTES, OPT)
OPT_DELAYED = subjects.delayed(AssetClass.OPTIONS, Channel.QUOTES, OPT)


async def _settle() -> None:
    await asyncio.sleep(0.3)


async def test_free_credential_gets_delayed_and_every_realtime_pattern_is_refused(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    tok = await stack.token(unique_user(), "free")
    assert tok["tier"] == "free"
    assert tok["subjects"]["paths"] == {"stocks": "delayed", "options": "delayed"}
    violations = Violations()
    nc = await stack.connect_user(tok["nats"]["creds"], violations)
    got: list[str] = []

    async def cb(msg: Msg) -> None:
        got.append(msg.subject)

    await nc.subscribe(AAPL_DELAYED, cb=cb)
    await nc.subscribe(OPT_DELAYED, cb=cb)
    refused = ["md.rt.>", "md.>", ">", subjects.market_pattern(asset=AssetClass.STOCKS,
               channel=Channel.QUOTES, symbol="AAPL"), AAPL_RT, OPT_RT]  # fmt: skip
    for pattern in refused:
        await nc.subscribe(pattern, cb=cb)
    await nc.subscribe(AAPL_RT, queue="q", cb=cb)
    await nc.flush()
    await _settle()

    hub = await stack.service("hub")
    for subject in (AAPL_RT, AAPL_DELAYED, OPT_RT, OPT_DELAYED):
        await hub.publish(subject, b"{}")
    await hub.flush()
    await _settle()
    await hub.close()

    assert sorted(got) == sorted([AAPL_DELAYED, OPT_DELAYED])
    for pattern in refused:
        assert violations.about(pattern), (pattern, violations.errors)
    assert all("subscription" in e for e in violations.errors)
    await nc.close()


async def test_pro_credential_gets_realtime_equities_but_not_realtime_options(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    tok = await stack.token(unique_user(), "pro")
    assert tok["subjects"]["paths"] == {"stocks": "rt", "options": "delayed"}
    violations = Violations()
    nc = await stack.connect_user(tok["nats"]["creds"], violations)
    got: list[str] = []

    async def cb(msg: Msg) -> None:
        got.append(msg.subject)

    for s in (AAPL_RT, AAPL_DELAYED, OPT_DELAYED, OPT_RT, "md.rt.options.>", "md.rt.>"):
        await nc.subscribe(s, cb=cb)
    await nc.flush()
    await _settle()
    hub = await stack.service("hub")
    for subject in (AAPL_RT, AAPL_DELAYED, OPT_RT, OPT_DELAYED):
        await hub.publish(subject, b"{}")
    await hub.flush()
    await _settle()
    await hub.close()
    assert sorted(got) == sorted([AAPL_RT, AAPL_DELAYED, OPT_DELAYED])
    for refused in (OPT_RT, "md.rt.options.>", "md.rt.>"):
        assert violations.about(refused), (refused, violations.errors)
    await nc.close()


@pytest.mark.parametrize("tier", ["free", "pro", "pro_plus"])
async def test_no_user_credential_can_publish_market_data(
    tier_gate_stack: TierGateStack, tier: str
) -> None:
    stack = tier_gate_stack
    tok = await stack.token(unique_user(), tier)
    violations = Violations()
    nc = await stack.connect_user(tok["nats"]["creds"], violations)
    watcher = await stack.service("dev-admin")
    seen: list[str] = []

    async def cb(msg: Msg) -> None:
        seen.append(msg.subject)

    await watcher.subscribe("md.>", cb=cb)
    await watcher.flush()
    targets = (AAPL_RT, AAPL_DELAYED, OPT_RT, "md.settle.stocks.2026-01-02.AAPL")
    for subject in targets:
        await nc.publish(subject, b"{}")
    await nc.flush()
    await _settle()
    assert seen == []
    for subject in targets:
        assert violations.about(subject), (subject, violations.errors)
    await nc.close()
    await watcher.close()


async def test_user_may_use_only_its_own_inbox_and_the_interest_subject(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    alice, bob = unique_user("alice"), unique_user("bob")
    tok = await stack.token(alice, "free")
    prefix = tok["subjects"]["inbox_prefix"]
    assert prefix == subjects.user_inbox_prefix(alice)
    violations = Violations()
    nc = await stack.connect_user(tok["nats"]["creds"], violations, inbox_prefix=prefix)
    hub = await stack.service("hub-responder")

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"ok": true}')

    await hub.subscribe(subjects.INTEREST_ANY, cb=answer)
    await hub.flush()
    own = subjects.interest("free", subjects.user_token(alice))
    assert tok["subjects"]["interest"] == own
    reply = await nc.request(own, b"{}", timeout=2)
    assert reply.data == b'{"ok": true}'
    bobs = subjects.interest("free", subjects.user_token(bob))
    for refused_pub in (bobs, subjects.INTEREST, subjects.interest("pro", own.rsplit(".", 1)[1])):
        await nc.publish(refused_pub, b"{}")

    others = subjects.user_inbox_prefix(bob) + ".>"
    await nc.subscribe(others)
    await nc.subscribe("_INBOX.>")
    await nc.subscribe(f"{subjects.USER_INBOX_ROOT}.>")
    await nc.flush()
    await _settle()
    for refused in (others, "_INBOX.>", f"{subjects.USER_INBOX_ROOT}.>", bobs, subjects.INTEREST):
        assert violations.about(refused), (refused, violations.errors)
    await nc.close()
    await hub.close()


async def test_subscription_cap_from_policy_is_enforced(tier_gate_stack: TierGateStack) -> None:
    stack = tier_gate_stack
    tok = await stack.token(unique_user(), "free")
    cap = tok["subjects"]["max_subscriptions"]
    nc = await stack.connect_user(tok["nats"]["creds"])
    for i in range(cap + 1):
        await nc.subscribe(f"md.delayed.stocks.quotes.S{i}")
    await _settle()
    # The server refuses subscription cap+1 ("maximum subscriptions exceeded"); nats-py then
    # closes the connection with that error.
    assert "maximum subscriptions" in str(nc.last_error).lower()
    assert nc.is_closed
