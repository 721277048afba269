"""NATS: the BILLING stream (tier-gate owns it) and account-claims pushes (revocations)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from nats.aio.client import Client, RawCredentials
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from raxx_contracts import DecodeError, TierChanged, decode, encode, subjects

from tier_gate.errors import UnavailableError

log = logging.getLogger(__name__)

BILLING_STREAM_CONFIG = StreamConfig(
    name=subjects.BILLING_STREAM,
    subjects=[subjects.BILLING_TIER_CHANGED],
    storage=StorageType.FILE,
    retention=RetentionPolicy.LIMITS,
    max_age=90 * 86400,
    duplicate_window=2 * 86400,
)
"""The one declaration of the BILLING stream (billing publishes, tier-gate consumes)."""


def credentials(creds_path: Path | None, creds_text: str | None) -> RawCredentials | str | None:
    """nats-py credentials from a .creds path or from creds text (read from OpenBao)."""
    if creds_path is not None:
        return str(creds_path)
    if creds_text is not None:
        return RawCredentials(creds_text)
    return None


async def connect(url: str, creds: RawCredentials | str | None, name: str) -> Client:
    """A reconnecting nats-py client (tries forever once it has connected)."""

    async def _err(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    try:
        return await nats.connect(
            url,
            name=name,
            user_credentials=creds,
            error_cb=_err,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=3,
        )
    except Exception as exc:
        raise UnavailableError(f"NATS {url} unreachable for {name}: {exc}") from exc


async def ensure_billing_stream(nc: Client) -> None:
    """Declare BILLING (create, or update to our config): the only place that declares it."""
    js = nc.jetstream()
    try:
        await js.stream_info(subjects.BILLING_STREAM)
        await js.update_stream(BILLING_STREAM_CONFIG)
    except NotFoundError:
        await js.add_stream(BILLING_STREAM_CONFIG)


async def billing_batches(
    nc: Client, durable: str, *, batch: int = 100, wait: float = 1.0
) -> AsyncIterator[list[Msg]]:
    """Batches from the durable BILLING consumer (explicit ack, bounded redelivery)."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        subjects.BILLING_TIER_CHANGED,
        durable=durable,
        stream=subjects.BILLING_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=20,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=wait)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            yield msgs
    finally:
        await sub.unsubscribe()


async def push_account_jwt(sys_nc: Client, account_pub: str, account_jwt: str) -> str:
    """Send a re-signed account JWT to `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.UPDATE`; return reply."""
    subject = f"$SYS.REQ.ACCOUNT.{account_pub}.CLAIMS.UPDATE"
    try:
        msg = await sys_nc.request(subject, account_jwt.encode(), timeout=3)
    except (TimeoutError, nats.errors.Error) as exc:
        raise UnavailableError(f"claims update not answered: {exc}") from exc
    reply = json.loads(msg.data)
    if "error" in reply:
        raise UnavailableError(f"claims update refused: {reply['error']}")
    data = reply.get("data", {})
    return str(data.get("message", ""))


async def user_tiers_bucket(nc: Client, max_age: float) -> KeyValue:
    """Declare `USER_TIERS_BUCKET` (tier-gate owns it): one entry per user, `max_age` TTL."""
    js = nc.jetstream(timeout=3)
    cfg = KeyValueConfig(
        bucket=subjects.USER_TIERS_BUCKET,
        history=1,
        ttl=max_age,
        storage=StorageType.FILE,
        description="tier-gate: each user's current tier (the hub refuses superseded tokens)",
    )
    try:
        return await js.create_key_value(cfg)
    except BadRequestError:
        # Exists with another TTL (a changed credential lifetime): adopt ours.
        info = await js.stream_info(f"KV_{subjects.USER_TIERS_BUCKET}")
        info.config.max_age = max_age
        await js.update_stream(info.config)
        return await js.key_value(subjects.USER_TIERS_BUCKET)


async def announce_tier(kv: KeyValue, event: TierChanged) -> bool:
    """Make the user's entry carry `event` unless it already holds a newer version.

    Compare-and-set on the entry's revision, so replicas announcing concurrently (or out of
    order) never move an entry back. Returns whether this call wrote. Raises
    UnavailableError when NATS does not answer.
    """
    key = subjects.user_tier_key(event.user_id)
    data = encode(event)
    try:
        for _ in range(10):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                entry = None
            try:
                if entry is None or entry.value is None:
                    await kv.create(key, data)
                    return True
                try:
                    current: TierChanged | None = decode(TierChanged, entry.value)
                except DecodeError:
                    current = None
                if current is not None and current.version >= event.version:
                    return False
                await kv.update(key, data, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue  # another writer got there first: read it again
    except (TimeoutError, nats.errors.Error) as exc:
        raise UnavailableError(f"tier announcement for a user not written: {exc!r}") from exc
    raise UnavailableError("tier announcement kept conflicting; will retry")
