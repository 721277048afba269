"""NATS: publish handoff events; consume `billing.tier.changed` from the existing BILLING stream.

The stream is declared by tier-gate; this module only binds a durable pull consumer to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from raxx_contracts import HandoffEvent, TierChanged, decode, encode, subjects
from raxx_contracts.errors import DecodeError

log = logging.getLogger(__name__)

TierHandler = Callable[[TierChanged], Awaitable[None]]


def _raise_if_cancelling() -> None:
    # nats-py's fetch can turn a cancellation into a timeout; do not swallow a shutdown.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RetryLater(Exception):
    """Raised by a handler to have a message redelivered after a delay."""


class Bus:
    """A NATS connection for broker-handoff."""

    def __init__(self, url: str, creds: str | None = None) -> None:
        self._url = url
        self._creds = creds
        self._nc: NatsClient | None = None
        self.consuming = False
        """True while the tier consumer is bound to the BILLING stream."""

    async def connect(self) -> None:
        """Connect (retrying in the background after the first success)."""
        opts: dict[str, object] = {"name": "broker-handoff", "max_reconnect_attempts": -1}
        if self._creds:
            opts["user_credentials"] = self._creds
        self._nc = await nats.connect(self._url, **opts)

    async def close(self) -> None:
        """Flush what was published, then close (no drain: it would wait on the pull fetch)."""
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            await self._nc.close()

    @property
    def connected(self) -> bool:
        """Whether the connection is up (for /readyz)."""
        return self._nc is not None and self._nc.is_connected

    async def publish_event(self, event: HandoffEvent) -> None:
        """Publish a handoff event (best effort: a bus outage must not undo a disconnect)."""
        if self._nc is None:
            return
        try:
            await self._nc.publish(subjects.BROKER_HANDOFF_EVENTS, encode(event))
        except Exception as exc:  # the event is advisory; the audit log is the record
            log.warning("could not publish handoff event: %s", type(exc).__name__)

    async def consume_tiers(self, durable: str, handler: TierHandler) -> None:
        """Consume tier changes forever (caller supervises and restarts on error)."""
        if self._nc is None:
            raise RuntimeError("consume_tiers before connect")
        js = self._nc.jetstream()
        sub = await js.pull_subscribe(
            subjects.BILLING_TIER_CHANGED,
            durable=durable,
            stream=subjects.BILLING_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_deliver=50,
            ),
        )
        self.consuming = True
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch=50, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    _raise_if_cancelling()
                    continue
                for msg in msgs:
                    await self._handle(msg, handler)
        finally:
            self.consuming = False
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle(self, msg: Msg, handler: TierHandler) -> None:
        try:
            event = decode(TierChanged, msg.data)
        except DecodeError:
            log.error("dropping a malformed tier change (seq %s)", msg.metadata.sequence.stream)
            await msg.term()
            return
        try:
            await handler(event)
        except RetryLater:
            await msg.nak(delay=2.0)
            return
        except asyncio.CancelledError:
            raise
        await msg.ack()
