"""The billing consumers on faststream's TestNatsBroker: the kit's ack policy, tier-gate's
handling (apply, revoke, announce), and the AsyncAPI document."""

from __future__ import annotations

import datetime as dt

from raxx_contracts import TierChanged, encode, subjects

from .conftest import Running

DLQ = subjects.dead_letter("tier-gate", subjects.BILLING_TIER_CHANGED)


def _event(user: str, tier: str, version: int) -> bytes:
    return encode(
        TierChanged(user_id=user, tier=tier, version=version, timestamp=dt.datetime.now(dt.UTC))
    )


def _sample(running: Running, name: str, **labels: str) -> float:
    value = running.runtime.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def _publish(running: Running, data: bytes) -> None:
    await running.broker.publish(
        data, subjects.BILLING_TIER_CHANGED, stream=subjects.BILLING_STREAM
    )


async def test_a_tier_change_is_applied_announced_and_acked(running: Running) -> None:
    await _publish(running, _event("u1", "pro", 3))
    assert running.db.tiers["u1"] == ("pro", 3)
    assert running.bus.announced[-1].tier == "pro"
    assert ("ack", None) in running.settled
    assert _sample(running, "tg_billing_events_applied_total") == 1.0
    assert await running.runtime.gate.tier_of("u1") == ("pro", 3)
    await _publish(running, _event("u1", "free", 2))  # stale: ignored, still acked
    assert running.db.tiers["u1"] == ("pro", 3)
    assert running.settled[-1] == ("ack", None)
    assert _sample(running, "tg_billing_events_ignored_total", reason="stale_version") == 1.0


async def test_a_downgrade_revokes_and_pushes(running: Running) -> None:
    ident = await running.identity("u2", "pro")
    await running.http.post("/v1/tokens", headers={"Authorization": f"Bearer {ident}"})
    pushes = len(running.bus.pushed)
    await _publish(running, _event("u2", "free", 10))
    assert len(running.db.revoked) == 1
    assert len(running.bus.pushed) == pushes + 1
    assert _sample(running, "tg_credentials_revoked_total") == 1.0


async def test_bad_payloads_and_unknown_tiers_are_dead_lettered_and_counted(
    running: Running,
) -> None:
    dead = running.dead
    await _publish(running, b"{not json")
    await _publish(running, _event("u3", "gold", 1))
    assert [s for s, _ in running.settled] == ["term", "term"]
    assert [m.raw_message.subject for m in dead] == [DLQ, DLQ]
    assert dead[0].raw_message.data == b"{not json"  # the original bytes, untouched
    assert (
        _sample(
            running,
            "tg_dead_letters_total",
            subject=subjects.BILLING_TIER_CHANGED,
            reason="undecodable",
        )
        == 1.0
    )
    assert (
        _sample(
            running,
            "tg_dead_letters_total",
            subject=subjects.BILLING_TIER_CHANGED,
            reason="unknown_tier",
        )
        == 1.0
    )
    assert _sample(running, "tg_billing_events_ignored_total", reason="unknown_tier") == 1.0
    assert "u3" not in running.db.tiers


async def test_database_down_naks_with_its_retry_delay(running: Running) -> None:
    running.db.down = True
    await _publish(running, _event("u4", "pro", 1))
    assert running.settled[-1] == ("nak", 2.0)
    running.db.down = False
    await _publish(running, _event("u4", "pro", 1))  # the redelivery
    assert running.settled[-1] == ("ack", None)
    assert running.db.tiers["u4"] == ("pro", 1)


async def test_the_broadcast_keeps_this_replicas_cache_current(running: Running) -> None:
    """The core-NATS copy moves this replica's cache by version, even when the durable copy
    cannot be applied (here: PostgreSQL down)."""
    running.db.down = True
    await running.broker.publish(_event("u5", "pro_plus", 7), subjects.BILLING_TIER_CHANGED)
    assert "u5" not in running.db.tiers
    assert await running.runtime.gate.tier_of("u5") == ("pro_plus", 7)  # from the cache
    await running.broker.publish(_event("u5", "free", 6), subjects.BILLING_TIER_CHANGED)
    assert await running.runtime.gate.tier_of("u5") == ("pro_plus", 7)  # never back


async def test_asyncapi_names_every_subject_tier_gate_uses(running: Running) -> None:
    doc = (await running.http.get("/asyncapi.json")).json()
    subject_of = {
        f"#/channels/{name}": c["bindings"]["nats"]["subject"]
        for name, c in doc["channels"].items()
    }
    by_action: dict[str, set[str]] = {"receive": set(), "send": set()}
    for op in doc["operations"].values():
        by_action[op["action"]].add(subject_of[op["channel"]["$ref"]])
    assert subjects.BILLING_TIER_CHANGED in by_action["receive"]  # durable + broadcast
    assert {
        DLQ,  # dead letters (the kit's ack policy)
        f"$KV.{subjects.USER_TIERS_BUCKET}.>",  # current tiers for the hub
        "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",  # revocation pushes
        subjects.BILLING_TIER_CHANGED,  # dev route, as billing would
    } <= by_action["send"]
    assert (await running.http.get("/docs/asyncapi")).status_code == 200
