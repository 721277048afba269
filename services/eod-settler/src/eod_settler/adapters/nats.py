"""NATS: the ONE declaration of streams SETTLES and CORPACTIONS, the publishers of the outbox
relay (on the kit's faststream broker), and the KV reads (held options, the hub's interest)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from faststream.nats import JStream, NatsBroker
from faststream.nats.publisher.usecase import LogicPublisher
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from raxx_contracts import (
    AssetClass,
    CorporateAction,
    DecodeError,
    HeldOptionContract,
    Settle,
    SettleBatchDone,
    decode,
    subjects,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publishers:
    """The settler's JetStream publishers on the kit's faststream broker, one per subject family.

    They document the channels (the AsyncAPI document served at `/asyncapi.json`) and carry
    the stream each family belongs to; a publish always names the row's concrete subject
    (built by `raxx_contracts.subjects`). None of them declares a stream (`declare=False`):
    `ensure_stream` below is the only declaration (faststream would overwrite the config).
    """

    stocks: LogicPublisher
    options: LogicPublisher
    done: LogicPublisher
    corpactions: LogicPublisher

    def for_subject(self, subject: str) -> LogicPublisher:
        """The publisher whose family `subject` belongs to (its stream named by the publish)."""
        if subject.startswith(_CORPACTIONS_PREFIX):
            return self.corpactions
        if subject.startswith(_DONE_PREFIX):
            return self.done
        if subject.startswith(_OPTIONS_PREFIX):
            return self.options
        return self.stocks


_CORPACTIONS_PREFIX = subjects.CORPACTIONS_ANY.removesuffix(">")
_DONE_PREFIX = subjects.SETTLE_DONE_ANY.removesuffix("*")
_OPTIONS_PREFIX = subjects.SETTLE_OPTIONS_ANY.removesuffix(">")


def publishers(broker: NatsBroker, timeout: float) -> Publishers:
    """Register the settler's publishers on `broker` (`timeout`: seconds to wait for each
    PubAck; faststream's 0.5 s default is too short for a stream under load)."""
    settles = JStream(subjects.SETTLES_STREAM, declare=False)
    corp = JStream(subjects.CORPACTIONS_STREAM, declare=False)

    def pub(
        subject: str, stream: JStream, schema: type, title: str, description: str
    ) -> LogicPublisher:
        return broker.publisher(
            subject, stream=stream, timeout=timeout, schema=schema, title=title,
            description=description,
        )  # fmt: skip

    return Publishers(
        stocks=pub(
            subjects.SETTLE_STOCKS_ANY, settles, Settle, "settle.stocks",
            "A stock's settle revision for a date (md.settle.stocks.<date>.<symbol>);"
            " Nats-Msg-Id settle:<date>:<symbol>:<revision>.",
        ),
        options=pub(
            subjects.SETTLE_OPTIONS_ANY, settles, Settle, "settle.options",
            "An option's settle revision (md.settle.options.<date>.<occ>).",
        ),
        done=pub(
            subjects.SETTLE_DONE_ANY, settles, SettleBatchDone, "settle.done",
            "The date's batch marker: every settle of the date is on the stream before it.",
        ),
        corpactions=pub(
            subjects.CORPACTIONS_ANY, corp, CorporateAction, "corpactions",
            "A symbol's corporate actions effective on a date (md.corpactions.<date>.<symbol>).",
        ),
    )  # fmt: skip


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
    pubs: Publishers,
    messages: Sequence[tuple[str, str, bytes]],
    ack_wait: float,
) -> list[tuple[bool, bool]]:
    """Publish (subject, msg_id, payload) concurrently; per message (acked, duplicate).

    `Nats-Msg-Id` makes a republish (a crash between ack and mark) a duplicate the stream
    drops; each publish names its stream, so a subject typo cannot land elsewhere."""

    async def one(subject: str, msg_id: str, payload: bytes) -> object:
        return await pubs.for_subject(subject).publish(
            payload,
            subject=subject,
            headers={"Nats-Msg-Id": msg_id},
            correlation_id=msg_id,  # faststream's default is a uuid4 per message
            stream=stream_for(subject),
            timeout=ack_wait,
        )

    results = await asyncio.gather(*(one(*m) for m in messages), return_exceptions=True)
    out: list[tuple[bool, bool]] = []
    for r in results:
        if isinstance(r, BaseException):
            if not isinstance(r, Exception):
                raise r
            log.debug("publish failed: %s", type(r).__name__)
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
