"""Replaying a recorded session from md-replay: `replay(...)` yields it in original order.

The request goes to the caller's own `md.ctl.replay.<tier>.<token>`; md-replay answers with
`ReplayAccepted` (or a typed `ErrorReply`, raised here as :class:`ReplayRefused`) and streams
frames into the caller's own inbox. This iterator unpacks the frames, acknowledges every
`ack_every` frames (md-replay stops a replay whose consumer falls silent), and yields, in
order: :class:`ReplayMessage` per market-data message, :class:`ReplayProgress` now and then,
and the final :class:`ReplayEnd`. Leaving the loop early sends a stop, so md-replay releases
the replay at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel
from raxx_contracts import (
    AssetClass,
    Channel,
    DecodeError,
    ErrorReply,
    NanoDatetime,
    ReplayAccepted,
    ReplayAck,
    ReplayEnd,
    ReplayProgress,
    ReplayRequest,
    ReplayStop,
    decode,
    decode_frame,
    encode,
    frame_columns,
    subjects,
)
from raxx_contracts.replay import HDR_KIND, KIND_END, KIND_FRAME, KIND_PROGRESS


class ReplayRefused(Exception):
    """md-replay refused the request: `code` is one of `ReplayErrorCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ReplayMessage(NamedTuple):
    """One replayed market-data message: its subject as the tier sees it live, the capture
    sequence, the original publish time (ns) and the exact payload; `event` is the decoded
    contract model (None when decoding was not asked for)."""

    subject: str
    seq: int
    ts_ns: int
    payload: bytes
    event: BaseModel | None = None


ReplayItem = ReplayMessage | ReplayProgress | ReplayEnd


def _model_for(subject: str) -> type[BaseModel] | None:
    from raxx_md_client.client import MODELS

    try:
        parsed = subjects.parse_market(subject)
    except Exception:
        return None
    return MODELS.get((parsed.asset, parsed.channel))


async def replay(
    nc: Client,
    tier: str,
    user_token: str,
    date: dt.date,
    symbols: Iterable[str],
    *,
    asset: AssetClass = AssetClass.STOCKS,
    channels: Iterable[Channel] = (Channel.QUOTES, Channel.TRADES),
    start: dt.datetime | None = None,
    speed: float | None = None,
    decode_events: bool = True,
    answer_timeout: float = 10.0,
    queue_size: int = 256,
) -> AsyncIterator[ReplayItem]:
    """Replay `date`'s session for `symbols` over `nc` (a connection of the user whose
    `user_token` and `tier` the credential carries). See the module doc for what is yielded."""
    replay_id = uuid.uuid4().hex[:16]
    deliver = f"{subjects.USER_INBOX_ROOT}.{user_token}.replay.{replay_id}"
    control = subjects.replay(tier, user_token)
    req = ReplayRequest(
        replay_id=replay_id,
        date=date,
        symbols=tuple(symbols),
        asset_class=asset,
        channels=tuple(channels),
        start=NanoDatetime.from_datetime(start) if start is not None else None,
        speed=speed,
        deliver=deliver,
    )
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        queue.put_nowait(msg)

    sub = await nc.subscribe(deliver, cb=on_msg, pending_msgs_limit=queue_size * 64)
    ended = False
    try:
        try:
            answer = await nc.request(control, encode(req), timeout=answer_timeout)
        except NatsTimeoutError as exc:
            raise ReplayRefused("unavailable", "md-replay did not answer") from exc
        try:
            err = decode(ErrorReply, answer.data)
        except DecodeError:
            accepted = decode(ReplayAccepted, answer.data)
        else:
            raise ReplayRefused(err.error, err.message)
        frames = 0
        acked = 0
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), accepted.ack_timeout_s + answer_timeout)
            except TimeoutError as exc:
                raise ReplayRefused("unavailable", "md-replay fell silent") from exc
            kind = (msg.headers or {}).get(HDR_KIND)
            if kind == KIND_FRAME:
                frames += 1
                if not decode_events:
                    names, index, seq, ts, offsets, blob = frame_columns(msg.data)
                    for i, s, t, a, b in zip(index, seq, ts, offsets, offsets[1:], strict=False):
                        yield ReplayMessage(names[i], s, t, blob[a:b])
                for rec in decode_frame(msg.data) if decode_events else ():
                    event = None
                    if (model := _model_for(rec.subject)) is not None:
                        with contextlib.suppress(DecodeError):
                            event = decode(model, rec.payload)
                    yield ReplayMessage(rec.subject, rec.seq, rec.ts_ns, rec.payload, event)
                if frames - acked >= accepted.ack_every:
                    acked = frames
                    await nc.publish(control, encode(ReplayAck(replay_id=replay_id, frames=acked)))
            elif kind == KIND_PROGRESS:
                yield decode(ReplayProgress, msg.data)
            elif kind == KIND_END:
                ended = True
                yield decode(ReplayEnd, msg.data)
                return
    finally:
        if not ended:
            # The caller stopped iterating (or failed): release the replay at md-replay now.
            with contextlib.suppress(NatsError, ConnectionError):
                await nc.publish(control, encode(ReplayStop(replay_id=replay_id)))
                await nc.flush(timeout=2)
        with contextlib.suppress(NatsError, ConnectionError):
            await sub.unsubscribe()
