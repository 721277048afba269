"""The control plane on faststream (the kit's ack policy): the tier projection consumer on
`billing.tier.changed` and the publisher of `broker.handoff.events`.

The BILLING stream is tier-gate's: the consumer binds to it without declaring it
(`declare=False`). Ack policy (the kit's `control_router`): applied or stale → `ack`; the
database or Vault unavailable (`RetryableError`) → `nak(delay)`; a payload that does not decode
→ dead letter on `dlq.broker-handoff.billing.tier.changed` + `term`; the 50th failed delivery is
dead-lettered too, never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from faststream.nats import NatsRouter
from prometheus_client import CollectorRegistry
from raxx_contracts import HandoffEvent, TierChanged, encode, subjects
from raxx_service_kit.messaging import control_router, tier_changed_subscriber

log = logging.getLogger(__name__)

SERVICE = "broker-handoff"
METRICS_PREFIX = "bh"
MAX_DELIVER = 50
ACK_WAIT_SECONDS = 30

TierHandler = Callable[[TierChanged], Awaitable[None]]
EventSink = Callable[[HandoffEvent], Awaitable[None]]


def build_router(
    registry: CollectorRegistry, durable: str, on_tier: TierHandler
) -> tuple[NatsRouter, EventSink]:
    """The router (tier consumer, events publisher) and the best-effort event sink."""
    router = control_router(
        SERVICE, registry, metrics_prefix=METRICS_PREFIX, max_deliver=MAX_DELIVER
    )

    @tier_changed_subscriber(
        router, durable=durable, ack_wait=ACK_WAIT_SECONDS, max_deliver=MAX_DELIVER
    )
    async def tier_changed(event: TierChanged) -> None:
        await on_tier(event)

    events = router.publisher(
        subjects.BROKER_HANDOFF_EVENTS,
        schema=HandoffEvent,
        description="A live-broker connection changed; never carries a secret.",
    )

    async def publish(event: HandoffEvent) -> None:
        """Best effort: a bus outage must not undo a disconnect (the audit log is the record)."""
        try:
            await events.publish(encode(event))
        except Exception as exc:
            log.warning("could not publish handoff event: %s", type(exc).__name__)

    return router, publish
