"""Using a connection: account summary and idempotent orders (tier re-checked every time)."""

from __future__ import annotations

import logging
from typing import Any

from broker_handoff import domain
from broker_handoff.domain import OrderRequest
from broker_handoff.errors import BadRequest, IdempotencyConflict, ServiceError
from broker_handoff.service import HandoffService

log = logging.getLogger(__name__)

ACCOUNT_FIELDS = (
    "account_number",
    "status",
    "currency",
    "cash",
    "buying_power",
    "equity",
    "portfolio_value",
    "pattern_day_trader",
    "trading_blocked",
    "account_blocked",
)
ORDER_FIELDS = (
    "id",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "qty",
    "notional",
    "filled_qty",
    "filled_avg_price",
    "limit_price",
    "status",
    "created_at",
    "submitted_at",
)


def _pick(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: data.get(k) for k in fields if k in data}


class BrokerUse:
    """Account and orders for connected, eligible users."""

    def __init__(self, service: HandoffService) -> None:
        self.service = service
        self.metrics = service.metrics

    async def account(self, user_id: str) -> dict[str, Any]:
        """A summary of the user's Alpaca account."""
        stored = await self.service.token_for_use(user_id)
        raw = await self.service.deps.trading.account(stored.token, stored.env)
        return {"env": stored.env, **_pick(raw, ACCOUNT_FIELDS)}

    async def place_order(
        self, user_id: str, order: OrderRequest, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Place an order once per key; a repeat returns the original. (order, replayed)."""
        try:
            result = await self._place(user_id, order, idempotency_key)
        except ServiceError as exc:
            self.metrics.orders.labels(exc.code).inc()
            await self.service.deps.store.audit(user_id, user_id, "order", exc.code)
            raise
        self.metrics.orders.labels("replayed" if result[1] else "placed").inc()
        return result

    async def _place(
        self, user_id: str, order: OrderRequest, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        key = idempotency_key or order.client_order_id
        if not key:
            raise BadRequest(
                "Send an Idempotency-Key header (or client_order_id) so a retry never "
                "places a second order."
            )
        if idempotency_key and order.client_order_id and idempotency_key != order.client_order_id:
            raise BadRequest("Idempotency-Key and client_order_id differ; send one of them.")
        try:
            coid = domain.client_order_id(user_id, key)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        stored = await self.service.token_for_use(user_id)
        store, trading = self.service.deps.store, self.service.deps.trading
        first, row = await store.claim_order(user_id, coid, order.fingerprint())
        if not first:
            if row.get("fingerprint") != order.fingerprint():
                raise IdempotencyConflict("This idempotency key was used for a different order.")
            if row.get("state") == "placed" and row.get("provider_order"):
                return dict(row["provider_order"]), True
            # Pending: an earlier attempt may or may not have reached Alpaca. Ask it.
            existing = await trading.order_by_client_id(stored.token, stored.env, coid)
            if existing is None:
                raise IdempotencyConflict(
                    "An order with this idempotency key is still being placed; retry shortly."
                )
            summary = _pick(existing, ORDER_FIELDS)
            await store.record_order(user_id, coid, summary)
            return summary, True
        fields = domain.order_fields(order, coid)
        try:
            placed = await trading.submit(stored.token, stored.env, fields)
        except ServiceError as exc:
            if exc.status in (400, 403, 409, 422):
                # The provider refused it outright: nothing was placed, the key may be reused.
                await store.release_order(user_id, coid)
            else:
                # Unknown outcome (timeout, 5xx): keep the claim; a retry asks the provider.
                existing = await self._lookup_quietly(stored, coid)
                if existing is not None:
                    summary = _pick(existing, ORDER_FIELDS)
                    await store.record_order(user_id, coid, summary)
                    return summary, False
            raise
        summary = _pick(placed, ORDER_FIELDS)
        await store.record_order(user_id, coid, summary)
        await store.audit(user_id, user_id, "order", "placed", {"client_order_id": coid})
        return summary, False

    async def _lookup_quietly(self, stored: Any, coid: str) -> dict[str, Any] | None:
        try:
            return await self.service.deps.trading.order_by_client_id(
                stored.token, stored.env, coid
            )
        except ServiceError:
            return None
