"""NATS: connection, the ONE declaration of stream SETTLES, held options, JetStream publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from raxx_contracts import AssetClass, DecodeError, HeldOptionContract, decode, subjects

from eod_settler.errors import RetryableError

log = logging.getLogger(__name__)


async def connect(url: str, creds: str | None, name: str = "eod-settler") -> Client:
    """Connect with reconnects forever (the relay and listener survive server restarts)."""
    opts: dict[str, Any] = {"name": name, "max_reconnect_attempts": -1, "connect_timeout": 5}
    if creds:
        opts["user_credentials"] = creds
    try:
        return await nats.connect(url, **opts)
    except Exception as exc:
        raise RetryableError(f"nats unreachable at {url}: {type(exc).__name__}") from exc


def settles_stream_config(max_age_days: int, dedup_window_seconds: int) -> StreamConfig:
    """Config of stream SETTLES.

    No per-subject limit: a correction is a new message on the same (date, symbol) subject,
    and a durable consumer that has not yet read revision 1 must still get it. Keeping every
    revision also keeps the dedup state rebuildable after a server restart (the server rebuilds
    it only from messages still in the stream). Deletes are refused.
    """
    return StreamConfig(
        name=subjects.SETTLES_STREAM,
        subjects=list(subjects.SETTLES_STREAM_SUBJECTS),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=float(max_age_days * 86_400),
        duplicate_window=float(dedup_window_seconds),
        max_msgs_per_subject=-1,
        allow_direct=True,
        deny_delete=True,
    )


def corpactions_stream_config(max_age_days: int, dedup_window_seconds: int) -> StreamConfig:
    """Config of stream CORPACTIONS: the settles' guarantees (every revision kept, dedup
    window, deletes refused) on `md.corpactions.>`."""
    base = settles_stream_config(max_age_days, dedup_window_seconds)
    base.name = subjects.CORPACTIONS_STREAM
    base.subjects = list(subjects.CORPACTIONS_STREAM_SUBJECTS)
    return base


def stream_for(subject: str) -> str:
    """The stream an outbox subject belongs to (the publish names it: a typo cannot land
    in another stream)."""
    if subject.startswith("md.corpactions."):
        return subjects.CORPACTIONS_STREAM
    return subjects.SETTLES_STREAM


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> str:
    """Create stream SETTLES (or CORPACTIONS), or bring its settings back to `config`.

    The only declaration of either stream."""
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return "created"
    cur = info.config
    drift = (
        sorted(cur.subjects or []) != sorted(config.subjects or [])
        or cur.max_age != config.max_age
        or cur.duplicate_window != config.duplicate_window
        or (cur.max_msgs_per_subject or -1) != config.max_msgs_per_subject
        or bool(cur.allow_direct) != bool(config.allow_direct)
        or bool(cur.deny_delete) != bool(config.deny_delete)
    )
    if drift:
        log.warning("stream %s config drifted; restoring it", config.name)
        await js.update_stream(config)
        return "updated"
    return "ok"


async def held_options(js: JetStreamContext) -> list[str]:
    """OCC symbols in KV bucket MBT_HELD_OPTIONS (empty when the bucket does not exist)."""
    try:
        kv = await js.key_value(subjects.HELD_OPTIONS_BUCKET)
    except BucketNotFoundError:
        log.warning("KV bucket %s not found: no held options", subjects.HELD_OPTIONS_BUCKET)
        return []
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    out: list[str] = []
    for key in keys:
        entry = await kv.get(key)
        if not entry.value:
            continue
        try:
            out.append(decode(HeldOptionContract, entry.value).symbol)
        except DecodeError:
            log.warning("ignoring undecodable held-option entry %s", key)
    return sorted(set(out))


async def publish_batch(
    js: JetStreamContext,
    messages: Sequence[tuple[str, str, bytes]],
    ack_wait: float,
) -> list[tuple[bool, bool]]:
    """Publish (subject, msg_id, payload) pipelined; per message (acked, duplicate)."""
    futures: list[asyncio.Future[Any]] = []
    for subject, msg_id, payload in messages:
        fut = await js.publish_async(
            subject,
            payload,
            headers={"Nats-Msg-Id": msg_id},
            stream=stream_for(subject),
        )
        futures.append(fut)
    results = await asyncio.gather(
        *(asyncio.wait_for(f, ack_wait) for f in futures), return_exceptions=True
    )
    out: list[tuple[bool, bool]] = []
    for r in results:
        if isinstance(r, BaseException):
            out.append((False, False))
        else:
            out.append((True, bool(getattr(r, "duplicate", False))))
    return out


async def hub_held(js: JetStreamContext, asset: AssetClass) -> bytes | None:
    """The hub's acknowledged upstream set of `asset` (raw `UpstreamHeld`), None when absent
    (no hub yet, or it has not led since the bucket was made)."""
    try:
        kv = await js.key_value(subjects.HUB_INTEREST_BUCKET)
        entry = await kv.get(subjects.upstream_held_key(asset))
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    return entry.value or None
