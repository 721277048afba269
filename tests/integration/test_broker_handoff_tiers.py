"""broker-handoff's tier projection from `billing.tier.changed` (JetStream) and auto-disconnect."""

from __future__ import annotations

import asyncio

import nats
import pytest
from raxx_contracts import HandoffEvent, decode, subjects

from tests.integration import test_broker_handoff_flow as flow
from tests.integration.test_broker_handoff_flow import (
    Harness,
    new_user,
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
