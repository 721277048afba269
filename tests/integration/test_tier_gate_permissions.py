"""The NATS server, not tier-gate, enforces what each tier's credential may do."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import nats
import pytest
from nats.aio.client import Client
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


async def _refused(violations: Violations, *refused: str, within: float = 5.0) -> None:
    """Wait until the server reported a violation for each subject (they arrive async; a
    fixed sleep made these checks flaky on a loaded machine), then assert it."""
    for _ in range(int(within / 0.05)):
        if all(violations.about(r) for r in refused):
            break
        await asyncio.sleep(0.05)
    for r in refused:
        assert violations.about(r), (r, violations.errors)


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

    hub = await stack.hub_publisher()
    for subject in (AAPL_RT, AAPL_DELAYED, OPT_RT, OPT_DELAYED):
        await hub.publish(subject, b"{}")
    await hub.flush()
    await _settle()
    await hub.close()

    assert sorted(got) == sorted([AAPL_DELAYED, OPT_DELAYED])
    await _refused(violations, *refused)
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
    hub = await stack.hub_publisher()
    for subject in (AAPL_RT, AAPL_DELAYED, OPT_RT, OPT_DELAYED):
        await hub.publish(subject, b"{}")
    await hub.flush()
    await _settle()
    await hub.close()
    assert sorted(got) == sorted([AAPL_RT, AAPL_DELAYED, OPT_DELAYED])
    await _refused(violations, OPT_RT, "md.rt.options.>", "md.rt.>")
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
    await watcher.subscribe(f"{subjects.CAPTURE_PREFIX}.>", cb=cb)
    await watcher.flush()
    targets = (AAPL_RT, AAPL_DELAYED, OPT_RT, "md.settle.stocks.2026-01-02.AAPL",
               subjects.to_capture(AAPL_RT), subjects.to_capture(AAPL_DELAYED))  # fmt: skip
    for subject in targets:
        await nc.publish(subject, b"{}")
    await nc.flush()
    await _refused(violations, *targets)
    await _settle()
    assert seen == []
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
    await _refused(violations, others, "_INBOX.>", f"{subjects.USER_INBOX_ROOT}.>", bobs,
                   subjects.INTEREST)  # fmt: skip
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


async def _direct_get(nc: Client, prefix: str, stream: str, body: dict[str, Any]) -> list[Msg]:
    """A batch direct get on `stream` with the reply in the user's own inbox: the stored
    messages, up to the end-of-batch status (or nothing when the server dropped the request)."""
    inbox = f"{prefix}.{uuid.uuid4().hex}"
    sub = await nc.subscribe(inbox)
    await nc.publish(subjects.direct_get(stream), json.dumps(body).encode(), reply=inbox)
    got: list[Msg] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1.5)
            if (msg.headers or {}).get("Status") == "204":  # end of batch
                return got
            got.append(msg)
    except nats.errors.TimeoutError:
        return got
    finally:
        await sub.unsubscribe()


@pytest.mark.parametrize(
    ("tier", "readable"),
    [
        ("free", {"MD_DELAYED_STOCKS", "MD_DELAYED_OPTIONS"}),
        ("pro", {"MD_DELAYED_STOCKS", "MD_DELAYED_OPTIONS", "MD_RT_STOCKS"}),
        ("pro_plus", set(subjects.CAPTURE_STREAMS)),
    ],
)
async def test_direct_gets_reach_exactly_the_capture_streams_of_the_tier(
    tier_gate_stack: TierGateStack, tier: str, readable: set[str]
) -> None:
    """Gap recovery is enforced by the server: a credential may read the capture streams of the
    paths its tier may subscribe to, and its direct get on any other stream is refused."""
    stack = tier_gate_stack
    user = unique_user()
    tok = await stack.token(user, tier)
    assert set(tok["subjects"]["streams"]) == readable
    prefix = tok["subjects"]["inbox_prefix"]
    hub = await stack.hub_publisher()
    for subject in (AAPL_RT, AAPL_DELAYED, OPT_RT, OPT_DELAYED):
        await hub.publish(subject, b'{"n":1}')
        await hub.publish(subject, b'{"n":2}')
    await hub.flush()
    await hub.close()

    violations = Violations()
    nc = await stack.connect_user(tok["nats"]["creds"], violations, inbox_prefix=prefix)
    for stream in subjects.CAPTURE_STREAMS:
        batch = await _direct_get(nc, prefix, stream, {"seq": 1, "batch": 10})
        if stream in readable:
            assert [m.data for m in batch] == [b'{"n":1}', b'{"n":2}'], stream
            assert [m.headers[subjects.HDR_SEQUENCE] for m in batch] == ["1", "2"]  # type: ignore[index]
            assert {m.headers[subjects.HDR_STREAM] for m in batch} == {stream}  # type: ignore[index]
            assert not violations.about(subjects.direct_get(stream))
        else:
            assert batch == [], stream
            assert violations.about(subjects.direct_get(stream)), (stream, violations.errors)
    # no other JetStream API (stream info, consumers, message get) on any capture stream
    for other in ("$JS.API.STREAM.INFO.MD_DELAYED_STOCKS", "$JS.API.STREAM.MSG.GET.MD_RT_STOCKS",
                  "$JS.API.CONSUMER.CREATE.MD_DELAYED_STOCKS"):  # fmt: skip
        await nc.publish(other, b"{}", reply=f"{prefix}.x")
    await nc.flush()
    await _refused(
        violations, "$JS.API.STREAM.INFO.MD_DELAYED_STOCKS", "$JS.API.STREAM.MSG.GET.MD_RT_STOCKS"
    )
    await nc.close()


async def test_only_the_hub_identity_may_publish_capture_subjects(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    watcher = await stack.service("dev-admin")
    seen: list[str] = []

    async def cb(msg: Msg) -> None:
        seen.append(msg.subject)

    await watcher.subscribe(">", cb=cb)
    await watcher.flush()
    capture = subjects.to_capture(AAPL_RT)
    for name in ("settler", "hub-responder", "tier-gate", "broker-handoff", "billing"):
        violations = Violations()
        nc = await stack.service(name, error_cb=violations.cb)
        for subject in (capture, AAPL_RT, AAPL_DELAYED):
            await nc.publish(subject, b"{}")
        await nc.flush()
        await _refused(violations, capture, AAPL_RT, AAPL_DELAYED)
        await nc.close()
    assert not [s for s in seen if s.startswith(("md.rt", "md.delayed", "mdcap"))]
    await watcher.close()


async def test_the_hub_identity_may_read_where_its_delay_line_resumes(
    tier_gate_stack: TierGateStack,
) -> None:
    """The delay line resumes after the `Raxx-Source-Sequence` of the last message its delayed
    stream stored: the hub's own credential must be allowed that read (stream info and one
    message get), or the line fails on every start in a deployment with credentials."""
    from market_data_hub.adapters.nats import publish_batch
    from market_data_hub.delay_line import resume_after

    stack = tier_gate_stack
    await (await stack.hub_publisher()).close()  # the capture streams, declared as the hub does
    violations = Violations()
    hub = await stack.service("hub", error_cb=violations.cb)
    js = hub.jetstream()
    rt_stream = subjects.capture_stream(subjects.Path.RT, AssetClass.STOCKS)
    delayed_stream = subjects.capture_stream(subjects.Path.DELAYED, AssetClass.STOCKS)
    before = await resume_after(js, rt_stream, delayed_stream)
    delayed = subjects.to_capture(AAPL_DELAYED)
    await publish_batch(hub, [(delayed, b'{"n":1}'), (delayed, b'{"n":2}')], [before + 1, 4242])
    await hub.flush()
    await _settle()
    assert await resume_after(js, rt_stream, delayed_stream) == 4242
    assert not violations.errors, violations.errors
    await hub.close()
