"""NATS handlers for `billing.tier.changed`: the shared durable consumer (persists) and each
replica's own core subscription (keeps its entitlement cache current)."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from raxx_contracts import DecodeError, TierChanged, decode

from tier_gate.errors import UnavailableError
from tier_gate.metrics import Metrics
from tier_gate.service import TierGate

log = logging.getLogger(__name__)


async def on_tier_changed(gate: TierGate, metrics: Metrics, msg: Msg) -> None:
    """Consume one TierChanged: apply it if its version is newer; ack, term or nak."""
    try:
        event = decode(TierChanged, msg.data)
    except DecodeError as exc:
        metrics.billing_ignored.labels("invalid").inc()
        log.warning("billing event dropped: %s", exc)
        await msg.term()
        return
    if event.tier not in gate.policy.tiers:
        metrics.billing_ignored.labels("unknown_tier").inc()
        log.warning("billing event for unknown tier %r dropped", event.tier)
        await msg.term()
        return
    try:
        result = await gate.apply_tier(event.user_id, event.tier, event.version)
    except UnavailableError as exc:
        log.warning("billing event not applied yet (will retry): %s", exc)
        await msg.nak(delay=2)
        return
    if result.applied:
        metrics.billing_applied.inc()
    else:
        metrics.billing_ignored.labels("stale_version").inc()
    await msg.ack()


async def on_tier_broadcast(gate: TierGate, msg: Msg) -> None:
    """This replica's copy of a TierChanged: update its cache (by version), nothing else.

    The durable consumer (one replica per event) persists, revokes and counts; this lets
    every replica stop issuing the old tier at once. Bad events are the durable path's job.
    """
    try:
        event = decode(TierChanged, msg.data)
    except DecodeError:
        return
    if event.tier in gate.policy.tiers:
        gate.observe(event.user_id, event.tier, event.version)
