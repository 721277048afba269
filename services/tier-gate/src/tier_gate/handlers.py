"""The control plane on faststream: `billing.tier.changed`, twice.

* The shared durable consumer of the BILLING stream (one replica per event) persists the tier,
  revokes and pushes. Its ack policy is the service kit's (`control_router`): success → ack;
  PostgreSQL or NATS away (`RetryableError`) → nak with its delay; an undecodable payload or
  an unknown tier (`PermanentError`) → dead letter on `dlq.tier-gate.billing.tier.changed`,
  counted in `tg_dead_letters_total`, then term; still failing on delivery `MAX_DELIVER` → dead
  letter (nothing is dropped silently).
* Each replica's own core subscription keeps its entitlement cache current (by version), so a
  replica stops issuing the old tier as soon as the event is published, whichever replica
  consumes it. Bad events are the durable path's job.

tier-gate owns the BILLING stream and declares it itself (raw nats-py, `adapters.nats`); the
subscriber binds with `declare=False` so faststream never re-declares it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from faststream.nats import NatsRouter
from prometheus_client import CollectorRegistry
from raxx_contracts import TierChanged, subjects
from raxx_service_kit.messaging import control_router, tier_changed_subscriber

from tier_gate.errors import RetryableError, UnknownTierError
from tier_gate.metrics import Metrics

if TYPE_CHECKING:
    from tier_gate.service import TierGate

log = logging.getLogger(__name__)

SERVICE = "tier-gate"
MAX_DELIVER = 20
ACK_WAIT_SECONDS = 30.0


def billing_router(
    gate: Callable[[], TierGate | None],
    metrics: Metrics,
    registry: CollectorRegistry,
    *,
    durable: str,
) -> NatsRouter:
    """The router with both subscribers; `gate()` is the live service (None before start)."""
    router = control_router(SERVICE, registry, metrics_prefix="tg", max_deliver=MAX_DELIVER)

    def live() -> TierGate:
        found = gate()
        if found is None:
            raise RetryableError("tier-gate is starting", 1.0, log_detail="no runtime yet")
        return found

    @tier_changed_subscriber(
        router,
        durable=durable,
        ack_wait=ACK_WAIT_SECONDS,
        max_deliver=MAX_DELIVER,
        no_reply=True,
        title="billing.tier.changed:durable",
        description="Shared durable consumer: persist the tier, revoke and push on a downgrade.",
    )
    async def on_tier_changed(event: TierChanged) -> None:
        """Apply one TierChanged if its version is newer (the kit settles the message)."""
        service = live()
        if event.tier not in service.policy.tiers:
            metrics.billing_ignored.labels("unknown_tier").inc()
            raise UnknownTierError(f"unknown tier {event.tier!r}")
        result = await service.apply_tier(event.user_id, event.tier, event.version)
        if result.applied:
            metrics.billing_applied.inc()
        else:
            metrics.billing_ignored.labels("stale_version").inc()

    @router.subscriber(
        subjects.BILLING_TIER_CHANGED,
        # A JetStream publish is a request: its copy on the core subject carries the
        # publisher's ack inbox, which this handler must never answer.
        no_reply=True,
        title="billing.tier.changed:broadcast",
        description="This replica's copy: keep its entitlement cache current (by version).",
    )
    async def on_tier_broadcast(event: TierChanged) -> None:
        """Update this replica's cache (by version); nothing else."""
        service = gate()
        if service is not None and event.tier in service.policy.tiers:
            service.observe(event.user_id, event.tier, event.version)

    return router
