"""broker-handoff's tier projection from `billing.tier.changed` (JetStream) and auto-disconnect."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from raxx_contracts import HandoffEvent, TierChanged, decode, encode, subjects
from raxx_contracts.timestamps import NanoDatetime

from tests.integration import test_broker_handoff_flow as flow
from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.integration.test_broker_handoff_flow import (
    Harness,
    make_settings,
    new_user,
    open_harness,
    until,
)

pytestmark = pytest.mark.integration

# The shared harness fixtures live in the flow module.
bh = flow.bh
identity_key = flow.identity_key


def stale_count(h: Harness) -> float:
    value = h.service.metrics.registry.get_sample_value(
        "bh_tier_changes_total", {"outcome": "stale"}
    )
    return value or 0.0


async def test_duplicates_and_out_of_order_tier_changes_resolve_by_version(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 5)
    before = stale_count(bh)
    await bh.set_tier(user, "free", 3, wait=False)  # older: ignored
    await bh.set_tier(user, "pro_plus", 5, wait=False)  # duplicate: ignored

    async def both_seen() -> bool:
        return stale_count(bh) >= before + 2

    await until(both_seen)
    assert await bh.service.tier(user) == "pro_plus"
    assert (await bh.connect(user)).status_code == 200


async def test_a_downgrade_disconnects_and_publishes_an_event(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    assert (await bh.connect(user, env="live")).status_code == 200
    assert bh.stored_token(user)

    nc = await nats.connect(bh.nats_url)
    events: list[HandoffEvent] = []

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        event = decode(HandoffEvent, msg.data)
        if event.user_id == user:
            events.append(event)

    await nc.subscribe(subjects.BROKER_HANDOFF_EVENTS, cb=on_event)
    try:
        await bh.set_tier(user, "pro", 2)

        async def gone() -> bool:
            status = await bh.service.status(user)
            return status.get("status") == "disconnected" and bool(events)

        await until(gone)
        assert bh.stored_token(user) is None
        assert events[0].kind == "disconnected"
        assert events[0].reason == "tier_downgrade"
        assert events[0].env == "live"
        raw = [e.model_dump_json() for e in events]
        assert all("access_token" not in r for r in raw)
        audit = bh.rows(
            "SELECT actor, outcome, detail->>'reason' FROM bh_audit "
            "WHERE user_id = %s AND action = 'disconnect'",
            user,
        )
        assert audit == [("system", "done", "tier_downgrade")]
        # The user can no longer connect at the lower tier.
        r = await bh.call(
            "GET",
            "/v1/broker/alpaca/connect",
            params={"consent": "true"},
            headers=bh.auth(user),
        )
        assert r.status_code == 403
    finally:
        await nc.close()


async def test_an_upgrade_back_allows_connecting_again(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro", 1)
    r = await bh.call(
        "GET", "/v1/broker/alpaca/connect", params={"consent": "true"}, headers=bh.auth(user)
    )
    assert r.status_code == 403
    await bh.set_tier(user, "pro_plus", 2)
    assert (await bh.connect(user)).status_code == 200
    await asyncio.sleep(0)


async def test_the_durable_the_old_pull_loop_created_is_resumed_after_the_upgrade(
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    vault: Vault,
    postgres_dsn: str,
    nats_url: str,
) -> None:
    """The pre-kit pull loop made the durable with this config; events published while no
    broker-handoff ran are waiting on it, and the faststream consumer must pick them up (same
    durable name, stream bound not declared) rather than start a fresh one."""
    settings = make_settings(tmp_path, identity_key, alpaca_sim, vault, postgres_dsn, nats_url)
    await flow.ensure_billing_stream(nats_url)
    before = await stream_config(nats_url)
    user = new_user()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_consumer(
            subjects.BILLING_STREAM,
            ConsumerConfig(
                durable_name=settings.tier_consumer_durable,
                filter_subject=subjects.BILLING_TIER_CHANGED,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_deliver=50,
            ),
        )
        event = TierChanged(
            user_id=user,
            tier="pro_plus",
            version=1,
            timestamp=NanoDatetime.from_datetime(dt.datetime.now(dt.UTC)),
        )
        await js.publish(subjects.BILLING_TIER_CHANGED, encode(event))
    finally:
        await nc.close()
    async for h in open_harness(settings, identity_key, alpaca_sim, vault, postgres_dsn, nats_url):
        await until(functools.partial(has_tier, h, user, "pro_plus"))
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            names = [c.name for c in await js.consumers_info(subjects.BILLING_STREAM)]
            assert names.count(settings.tier_consumer_durable) == 1
            consumer = await js.consumer_info(
                subjects.BILLING_STREAM, settings.tier_consumer_durable
            )
            assert consumer.config.max_deliver == 50
        finally:
            await nc.close()
    assert await stream_config(nats_url) == before  # tier-gate's stream was not re-declared


async def has_tier(h: Harness, user: str, tier: str) -> bool:
    return await h.service.deps.store.tier_of(user) == tier


async def stream_config(nats_url: str) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(subjects.BILLING_STREAM)
        return info.config.as_dict()
    finally:
        await nc.close()
