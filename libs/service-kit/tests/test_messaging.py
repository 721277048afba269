"""The control plane's ack policy on TestNatsBroker (component layer: no server), and AsyncAPI."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker, NatsMessage, TestNatsBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from raxx_service_kit.errors import PermanentError, RetryableError
from raxx_service_kit.messaging import (
    HDR_REASON,
    HDR_SERVICE,
    HDR_SUBJECT,
    asyncapi_json,
    asyncapi_router,
    control_router,
    jetstream_subscriber,
    make_broker,
)
from raxx_service_kit.settings import ServiceSettings


class TierChanged(BaseModel):
    user_id: str
    tier: str


def build() -> tuple[NatsBroker, CollectorRegistry, list[NatsMessage], list[TierChanged]]:
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(), "kit-test")
    router = control_router("svc", registry, metrics_prefix="svc")
    handled: list[TierChanged] = []

    @jetstream_subscriber(router, "billing.tier.changed", stream="BILLING", durable="svc")
    async def on_tier(event: TierChanged) -> None:
        if event.tier == "retry":
            raise RetryableError("store down", 7.5)
        if event.tier == "bad":
            raise PermanentError("unknown tier", code="unknown_tier")
        if event.tier == "bug":
            raise KeyError("oops")
        handled.append(event)

    dead: list[NatsMessage] = []

    @broker.subscriber("dlq.svc.>")
    async def on_dead(msg: NatsMessage) -> None:
        dead.append(msg)

    broker.include_router(router)
    return broker, registry, dead, handled


def dead_count(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value(
        "svc_dead_letters_total", {"subject": "billing.tier.changed", "reason": reason}
    )
    return value or 0.0


async def test_success_acks_retryable_naks_with_delay_bug_naks_default(
    settled: list[tuple[str, Any]],
) -> None:
    broker, registry, dead, handled = build()
    async with TestNatsBroker(broker) as br:
        await br.publish({"user_id": "u1", "tier": "paid"}, "billing.tier.changed")
        assert handled == [TierChanged(user_id="u1", tier="paid")]
        assert settled == [("ack", None)]
        await br.publish({"user_id": "u1", "tier": "retry"}, "billing.tier.changed")
        assert settled[-1] == ("nak", 7.5)
        await br.publish({"user_id": "u1", "tier": "bug"}, "billing.tier.changed")
        assert settled[-1] == ("nak", 5.0)
    assert dead == []
    assert dead_count(registry, "unknown_tier") == 0


async def test_permanent_and_undecodable_are_dead_lettered_then_termed(
    settled: list[tuple[str, Any]],
) -> None:
    broker, registry, dead, _ = build()
    async with TestNatsBroker(broker) as br:
        await br.publish(
            {"user_id": "u1", "tier": "bad"}, "billing.tier.changed", headers={"X-Trace": "t1"}
        )
        await br.publish(b"{not json", "billing.tier.changed")
        await br.publish({"user_id": 5}, "billing.tier.changed")  # fails validation
    assert [s for s, _ in settled] == ["term", "term", "term"]
    assert [m.raw_message.subject for m in dead] == ["dlq.svc.billing.tier.changed"] * 3
    first = dead[0].raw_message
    assert first.headers is not None
    assert first.headers[HDR_REASON] == "unknown_tier"
    assert first.headers[HDR_SUBJECT] == "billing.tier.changed"
    assert first.headers[HDR_SERVICE] == "svc"
    assert first.headers["X-Trace"] == "t1"  # the original headers travel along
    assert dead[1].raw_message.data == b"{not json"  # the original bytes, untouched
    assert dead_count(registry, "unknown_tier") == 1
    assert dead_count(registry, "undecodable") == 2


async def test_core_subscribers_on_the_router_are_left_alone() -> None:
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(), "kit-test")
    router = control_router("svc", registry, metrics_prefix="svc")

    @router.subscriber("md.ctl.ping")
    async def ping(body: str) -> str:
        return f"pong {body}"

    broker.include_router(router)
    async with TestNatsBroker(broker) as br:
        reply = await br.request("x", "md.ctl.ping")
        assert await reply.decode() == "pong x"


async def test_asyncapi_documents_every_subject_and_is_served() -> None:
    broker, *_ = build()
    doc = asyncapi_json(broker, title="svc")
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"].split(":")[0] for c in doc["channels"].values()}
    assert {"billing.tier.changed", "dlq.svc.>"} <= addresses
    assert any("TierChanged" in name for name in doc["components"]["schemas"])
    app = FastAPI()
    app.include_router(asyncapi_router(broker, title="svc"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/asyncapi.json")
        assert r.json()["info"]["title"] == "svc"
        html = await c.get("/docs/asyncapi")
        assert html.status_code == 200
        assert "asyncapi" in html.text.lower()
