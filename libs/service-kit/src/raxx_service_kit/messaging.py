"""The message-driven control plane on faststream 0.6 (never the hub's data path).

What it gives a service:

- `make_broker(settings, name)`: a `NatsBroker` with the kit's connection options.
- `control_router(service, registry, metrics_prefix=...)`: a `NatsRouter` whose JetStream
  subscribers follow **one ack policy** (the `DeadLetters` middleware):

  ==========================================  =============================================
  the handler ...                             the message is ...
  ==========================================  =============================================
  returns                                     `ack`
  raises `RetryableError`                     `nak(delay=retry_after)` (redelivered later)
  raises `PermanentError`, or the payload     published to `dlq.<service>.<subject>` with
  does not decode (JSON, pydantic, contract)  its headers plus `Raxx-Dlq-*`, then `term`;
                                              `<prefix>_dead_letters_total` counts it
  raises anything else (a bug, a driver       `nak(delay=default_retry_after)`: treated as
  error the handler did not type)             retryable, logged with its traceback
  is retried `max_deliver` times              dead-lettered (reason `max_deliver`) instead of
                                              being dropped silently by the server
  ==========================================  =============================================

  Core-NATS subscribers on the same router (request/reply) are left alone.
- `jetstream_subscriber(router, subject, stream=..., durable=...)`: a subscriber bound to a
  stream it does **not** declare (`declare=False`: re-declaring overwrites the owner's config)
  with `AckPolicy.MANUAL` (faststream's default REJECT_ON_ERROR would `term` on any error).
- `tier_changed_subscriber(router, durable=..., ack_wait=..., max_deliver=...)`: the durable
  consumer of `billing.tier.changed` (BILLING stream, from the start) that two services share.
- `asyncapi_json(broker, ...)` and `asyncapi_router(broker, ...)`: the AsyncAPI document at
  `/asyncapi.json` (and an HTML viewer at `/docs/asyncapi`) beside FastAPI's `/docs`.

Handlers are tested on `faststream.nats.TestNatsBroker` (no server); the ack/nak/term and
dead-letter behaviour is also tested against a real nats-server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from faststream import AckPolicy, BaseMiddleware
from faststream.nats import JStream, NatsBroker, NatsRouter, PullSub
from faststream.specification import AsyncAPI, get_asyncapi_html
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from raxx_contracts import subjects

from raxx_service_kit.errors import PermanentError, RetryableError
from raxx_service_kit.nats import ConnectionStatus, connect_options, credentials
from raxx_service_kit.settings import ServiceSettings

log = logging.getLogger(__name__)

HDR_REASON = "Raxx-Dlq-Reason"
HDR_ERROR = "Raxx-Dlq-Error"
HDR_SUBJECT = "Raxx-Dlq-Subject"
HDR_SERVICE = "Raxx-Dlq-Service"
HDR_DELIVERIES = "Raxx-Dlq-Deliveries"


def make_broker(
    settings: ServiceSettings,
    name: str,
    *,
    status: ConnectionStatus | None = None,
    **options: Any,
) -> NatsBroker:
    """A `NatsBroker` for the control plane: the kit's connection options, the settings'
    creds, callbacks into `status` (readiness reasons). Readiness can also use
    `ping_checks({"nats": lambda: broker.ping(1.0)})`.

    With these options `broker.start()` retries the first connect forever (nats-py's rule
    with `max_reconnect_attempts=-1`): bound it (`asyncio.timeout`) where start-up must fail.
    """
    status = status or ConnectionStatus(name)
    opts = connect_options(
        name,
        status,
        credentials(settings),
        # faststream logs every message at this level; a caller's options still win
        **({"log_level": logging.DEBUG} | options),
    )
    return NatsBroker(settings.nats_url, **opts)


def _is_undecodable(exc: BaseException) -> bool:
    # json / UnicodeDecodeError / raxx_contracts.DecodeError are ValueErrors; pydantic's
    # ValidationError is raised by faststream's argument validation.
    return isinstance(exc, (ValidationError, ValueError))


class DeadLetters:
    """The kit's ack policy, as a faststream broker middleware (use `control_router`)."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        *,
        metrics_prefix: str,
        default_retry_after: float = 5.0,
        max_deliver: int | None = None,
    ) -> None:
        """`max_deliver`: dead-letter a retryable failure on this delivery (the consumer's
        own `max_deliver`, so the server never drops a message silently)."""
        subjects.dead_letter(service, "x")  # validates the name now, not on the first failure
        self.service = service
        self.default_retry_after = default_retry_after
        self.max_deliver = max_deliver
        self.dead_letters = Counter(
            f"{metrics_prefix}_dead_letters_total",
            "Messages this service could never process, parked on dlq.<service>.<subject>.",
            ["subject", "reason"],
            registry=registry,
        )

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        """faststream builds one middleware per message."""
        return _DeadLetterScope(msg, context=context, policy=self)


def _deliveries(raw: Any) -> int | None:
    try:
        return int(raw.metadata.num_delivered)
    except Exception:  # a core or test message has no JetStream metadata
        return None


class _DeadLetterScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: DeadLetters) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: Any = None,
    ) -> bool:
        raw: Any = self.msg
        handler = self.context.get_local("handler_")
        if getattr(handler, "stream", None) is None or isinstance(raw, list):
            return False  # core NATS (request/reply) or a batch: not ours to settle
        if exc_val is None:
            if not raw._ackd:
                await raw.ack()
            return False
        if not isinstance(exc_val, Exception):
            return False  # cancellation and the like propagate
        subject = raw.subject
        deliveries = _deliveries(raw)
        if isinstance(exc_val, PermanentError) or _is_undecodable(exc_val):
            reason = exc_val.code if isinstance(exc_val, PermanentError) else "undecodable"
            await self._dead_letter(raw, reason, exc_val, deliveries)
            return True
        retry_after = (
            exc_val.retry_after
            if isinstance(exc_val, RetryableError) and exc_val.retry_after is not None
            else self.policy.default_retry_after
        )
        limit = self.policy.max_deliver
        if limit is not None and deliveries is not None and deliveries >= limit:
            await self._dead_letter(raw, "max_deliver", exc_val, deliveries)
            return True
        if isinstance(exc_val, RetryableError):
            detail = exc_val.log_detail or exc_val.message
            log.warning("%s: retry in %.1f s: %s", subject, retry_after, detail)
        else:
            log.error(
                "%s: unexpected error, retry in %.1f s", subject, retry_after, exc_info=exc_val
            )
        if not raw._ackd:
            await raw.nak(delay=retry_after)
        return True

    async def _dead_letter(
        self, raw: Any, reason: str, exc: Exception, deliveries: int | None
    ) -> None:
        subject = raw.subject
        text = exc.message if isinstance(exc, PermanentError) else type(exc).__name__
        headers = {
            **{k: v for k, v in (raw.headers or {}).items() if not k.startswith("Nats-")},
            HDR_REASON: reason,
            HDR_ERROR: text[:200],
            HDR_SUBJECT: subject,
            HDR_SERVICE: self.policy.service,
        }
        if deliveries is not None:
            headers[HDR_DELIVERIES] = str(deliveries)
        broker = cast("NatsBroker", self.context.get_local("broker"))
        try:
            await broker.publish(
                bytes(raw.data), subjects.dead_letter(self.policy.service, subject), headers=headers
            )
        except (NatsError, OSError, TimeoutError):
            log.error("%s: dead letter not published; retrying the message instead", subject)
            if not raw._ackd:
                await raw.nak(delay=self.policy.default_retry_after)
            return
        self.policy.dead_letters.labels(subject, reason).inc()
        log.error("%s: dead-lettered (%s): %s", subject, reason, text)
        if not raw._ackd:
            await raw.term()


def control_router(
    service: str,
    registry: CollectorRegistry,
    *,
    metrics_prefix: str,
    default_retry_after: float = 5.0,
    max_deliver: int | None = None,
) -> NatsRouter:
    """A `NatsRouter` whose JetStream subscribers follow the kit's ack policy."""
    policy = DeadLetters(
        service,
        registry,
        metrics_prefix=metrics_prefix,
        default_retry_after=default_retry_after,
        max_deliver=max_deliver,
    )
    return NatsRouter(middlewares=(policy,))


def jetstream_subscriber(
    router: NatsRouter | NatsBroker,
    subject: str,
    *,
    stream: str,
    durable: str,
    pull: bool = True,
    batch_size: int = 16,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """A durable JetStream subscriber on a stream declared elsewhere (`declare=False`), with
    `AckPolicy.MANUAL` so the router's `DeadLetters` alone settles each message."""
    kwargs: dict[str, Any] = {
        "stream": JStream(stream, declare=False),
        "durable": durable,
        "ack_policy": AckPolicy.MANUAL,
    }
    if pull:
        kwargs["pull_sub"] = PullSub(batch_size=batch_size, timeout=1.0)
    return cast(
        "Callable[[Callable[..., Any]], Any]", router.subscriber(subject, **(kwargs | options))
    )


def tier_changed_subscriber(
    router: NatsRouter | NatsBroker,
    *,
    durable: str,
    ack_wait: float,
    max_deliver: int,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """A durable consumer of `billing.tier.changed` on the BILLING stream (tier-gate declares
    it; this binds with `declare=False`), from the first message (`DeliverPolicy.ALL`), so a
    projection of users' tiers is rebuilt from the stream. Broker-handoff and tier-gate both
    consume it; `max_deliver` should match the router's (`control_router`)."""
    return jetstream_subscriber(
        router,
        subjects.BILLING_TIER_CHANGED,
        stream=subjects.BILLING_STREAM,
        durable=durable,
        config=ConsumerConfig(
            ack_wait=ack_wait, max_deliver=max_deliver, deliver_policy=DeliverPolicy.ALL
        ),
        **options,
    )


# -- AsyncAPI -----------------------------------------------------------------------------------


def asyncapi_json(
    broker: NatsBroker, *, title: str, version: str = "0.1.0", description: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every subscriber and publisher of `broker`."""
    spec = AsyncAPI(broker, title=title, version=version, description=description)
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return doc


def asyncapi_router(broker: NatsBroker, *, title: str, version: str = "0.1.0") -> APIRouter:
    """`GET /asyncapi.json` (the document) and `GET /docs/asyncapi` (an HTML viewer)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/asyncapi.json")
    async def document() -> JSONResponse:
        return JSONResponse(asyncapi_json(broker, title=title, version=version))

    @router.get("/docs/asyncapi")
    async def viewer() -> HTMLResponse:
        spec = AsyncAPI(broker, title=title, version=version).to_specification()
        return HTMLResponse(get_asyncapi_html(spec, try_it_out=False))

    return router
