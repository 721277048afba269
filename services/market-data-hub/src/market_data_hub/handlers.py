"""The hub's control plane on faststream: the interest responder's subscriber.

A core-NATS subscriber (request/reply, no JetStream) on `md.ctl.interest.*.*` in queue group
`market-data-hub`, on the kit's control router. `no_reply=True`: faststream must never answer
by itself (it would publish the handler's result to whatever reply subject the requester
chose); the responder publishes only inside the requester's own inbox, or drops the request.
The handler only runs the free checks and hands the request to a per-user task, so faststream
calls it in order and one user's slow request delays no one else's.

Cost per request, measured (a flood of 3,000 rate-limited requests on a busy 2-core box): raw
nats-py callback + publish ~130-190 us; this subscriber with no injected parameters (the
message is read from the context) + a raw publish ~450 us; an injected `msg: NatsMessage`
parameter (fast_depends resolves it through four thread-pool hops) ~865-1,500 us, and
faststream's `publish` for the reply adds ~350 us more. Hence: no injected parameters, and the
reply goes out on the broker's own nats-py connection.

The data path (publishing, the delay line) is not here: it stays on raw nats-py.
"""

from __future__ import annotations

from faststream import ContextRepo
from faststream.nats import NatsBroker, NatsRouter
from prometheus_client import CollectorRegistry
from raxx_contracts import subjects
from raxx_service_kit.messaging import control_router

from market_data_hub.interest import QUEUE, InterestResponder, Publish

SERVICE = "market-data-hub"


def interest_router(
    responder: InterestResponder, registry: CollectorRegistry, context: ContextRepo
) -> NatsRouter:
    """The router holding the interest subscriber, feeding `responder`; `context` is the
    broker's (`broker.context`), where faststream keeps the message being handled."""
    router = control_router(SERVICE, registry, metrics_prefix="mdh")

    @router.subscriber(
        subjects.INTEREST_ANY,
        queue=QUEUE,
        no_reply=True,
        description="InterestRequest -> InterestReply | ErrorReply, only into the "
        "requester's own _INBOX_U.<user token>. inbox (queue group market-data-hub)",
    )
    async def on_interest(_body: object = None) -> None:
        raw = context.get_local("message").raw_message
        await responder.on_request(raw.subject, raw.reply or None, bytes(raw.data))

    return router


def reply_publisher(broker: NatsBroker) -> Publish:
    """Replies go out on the broker's (user-facing) nats-py connection, without faststream's
    publish pipeline (~350 us a message)."""

    async def publish(subject: str, body: bytes) -> None:
        await broker.connection.publish(subject, body)

    return publish
