"""The tier projection handler on TestNatsBroker: the kit's ack policy, downgrade, events."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsMessage
from raxx_contracts import subjects

from .fakes import Component
from .test_http import connect, set_tier


def sample(c: Component, name: str, **labels: str) -> float:
    return c.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_newer_versions_apply_and_stale_ones_are_acked_and_counted(
    comp: Component, settled: list[tuple[str, Any]]
) -> None:
    await set_tier(comp, "u1", "pro_plus", 5)
    await set_tier(comp, "u1", "free", 3)  # older: ignored
    await set_tier(comp, "u1", "pro_plus", 5)  # duplicate: ignored
    assert comp.store.tiers["u1"] == ("pro_plus", 5)
    assert [s for s, _ in settled] == ["ack", "ack", "ack"]
    assert sample(comp, "bh_tier_changes_total", outcome="applied") == 1
    assert sample(comp, "bh_tier_changes_total", outcome="stale") == 2


async def test_a_downgrade_disconnects_revokes_and_publishes_an_event(comp: Component) -> None:
    user = "u-down"
    await set_tier(comp, user, "pro_plus", 1)
    assert (await connect(comp, user, env="live")).status_code == 200
    [token] = comp.vault.tokens()
    await set_tier(comp, user, "pro", 2)
    assert comp.vault.tokens() == []
    assert comp.oauth.revoked == [token]
    assert comp.store.connections[user].status == "disconnected"
    last = [e for e in comp.events if e.user_id == user][-1]
    assert (last.kind, last.reason, last.env) == ("disconnected", "tier_downgrade", "live")
    assert ("system", user, "disconnect", "done") in [a[:4] for a in comp.store.audits]


async def test_database_down_naks_with_the_retry_delay(
    comp: Component, settled: list[tuple[str, Any]]
) -> None:
    comp.store.down = True
    await set_tier(comp, "u2", "pro_plus", 1)
    assert settled == [("nak", 5.0)]
    assert "u2" not in comp.store.tiers


async def test_an_undecodable_tier_change_is_dead_lettered_and_termed(
    comp: Component, settled: list[tuple[str, Any]]
) -> None:
    dead: list[bytes] = []

    @comp.broker.subscriber(subjects.dead_letter("broker-handoff", subjects.BILLING_TIER_CHANGED))
    async def parked(msg: NatsMessage) -> None:
        dead.append(msg.raw_message.data)

    await comp.broker.start()  # TestNatsBroker: (re)binds the late subscriber in memory
    await comp.broker.publish(b"{not json", subjects.BILLING_TIER_CHANGED)
    await comp.broker.publish({"user_id": "u3", "tier": "pro"}, subjects.BILLING_TIER_CHANGED)
    assert [s for s, _ in settled] == ["term", "term"]
    labels = {"subject": subjects.BILLING_TIER_CHANGED, "reason": "undecodable"}
    assert sample(comp, "bh_dead_letters_total", **labels) == 2
    assert dead[0] == b"{not json"  # the original bytes are parked, untouched
    assert "u3" not in comp.store.tiers
