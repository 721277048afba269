"""Replay of a recorded session: the request, the answers and the frame codec.

Protocol (md-replay answers on `subjects.replay(tier, token)`; see its README):

1. The client sends a :class:`ReplayRequest` as a NATS request. `deliver` names a subject
   inside its own inbox (`_INBOX_U.<token>.`); the answer is a :class:`ReplayAccepted` or an
   :class:`~raxx_contracts.ErrorReply` with a :data:`ReplayErrorCode`.
2. md-replay publishes on `deliver`, in order: frames (header :data:`HDR_KIND` = `frame`, body
   :func:`encode_frame`: many records per NATS message), :class:`ReplayProgress` now and then,
   and one :class:`ReplayEnd` (always last).
3. The client acknowledges with :class:`ReplayAck` (`frames` = frames received so far, on the
   same request subject, no reply needed) at least every `ack_every` frames. md-replay keeps at
   most `window` frames unacknowledged; no acknowledgement for `ack_timeout_s` ends the replay
   (`ack_timeout`) and releases everything. :class:`ReplayStop` ends it at once (`stopped`).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal, NamedTuple

from pydantic import Field

from raxx_contracts._base import Symbol, WireModel
from raxx_contracts.enums import AssetClass, Channel
from raxx_contracts.errors import DecodeError
from raxx_contracts.timestamps import NanoDatetime

MAX_REPLAY_SYMBOLS = 100
"""Symbols one request may name (the service may set a lower bound per tier)."""
MAX_REPLAY_SPEED = 10_000.0

HDR_KIND = "Raxx-Replay"
"""Header on every message md-replay delivers: `frame`, `progress` or `end`."""
KIND_FRAME = "frame"
KIND_PROGRESS = "progress"
KIND_END = "end"

ReplayErrorCode = Literal[
    "malformed",
    "unknown_date",
    "outside_retention",
    "not_archived",
    "window_expired",
    "not_entitled",
    "too_many_symbols",
    "rate_limited",
    "too_many_replays",
    "unknown_replay",
    "unavailable",
]
"""Typed refusals: `malformed` the request does not decode or its deliver subject lies outside
the requester's inbox; `unknown_date` a date in the future (or not a session date);
`outside_retention` older than the archive keeps; `not_archived` a past session that was not
archived and is no longer in the capture streams; `window_expired` the start (`--from`) lies
before what is still kept, or after the newest data the caller may see (its delay);
`not_entitled` the tier may not replay this asset; `too_many_symbols` over the per-request
bound; `rate_limited` over the per-user request rate; `too_many_replays` over the per-user
number of concurrent replays; `unknown_replay` an ack or stop for no running replay of this
user; `unavailable` the archive or the streams cannot be read now (retry later)."""

EndReason = Literal["complete", "stopped", "ack_timeout", "error", "shutdown"]

ReplayId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ReplayRequest(WireModel):
    """Start a replay of `date`'s session for `symbols` (ordered as recorded)."""

    schema_version: Literal[1] = 1
    op: Literal["start"] = "start"
    replay_id: ReplayId
    date: dt.date
    """The session date (America/New_York)."""
    symbols: tuple[Symbol, ...] = Field(min_length=1, max_length=MAX_REPLAY_SYMBOLS)
    asset_class: AssetClass = AssetClass.STOCKS
    channels: tuple[Channel, ...] = Field(
        default=(Channel.QUOTES, Channel.TRADES), min_length=1, max_length=len(Channel)
    )
    start: NanoDatetime | None = None
    """Replay from this instant (`--from`); None: from the session's first message."""
    speed: float | None = Field(default=None, gt=0, le=MAX_REPLAY_SPEED)
    """N times real time; None: as fast as the consumer acknowledges."""
    deliver: str = Field(min_length=1, max_length=255)
    """Where frames, progress and the end marker go: inside the requester's own inbox."""


class ReplayAck(WireModel):
    """Flow control: `frames` frames of `replay_id` received so far."""

    schema_version: Literal[1] = 1
    op: Literal["ack"] = "ack"
    replay_id: ReplayId
    frames: int = Field(ge=0)


class ReplayStop(WireModel):
    """End `replay_id` now; md-replay sends the end marker (`stopped`) and releases it."""

    schema_version: Literal[1] = 1
    op: Literal["stop"] = "stop"
    replay_id: ReplayId


ReplayCommand = Annotated[ReplayRequest | ReplayAck | ReplayStop, Field(discriminator="op")]


class ReplayAccepted(WireModel):
    """The answer to a ReplayRequest that will run."""

    schema_version: Literal[1] = 1
    replay_id: str
    source: Literal["archive", "capture"]
    """Where the session is read from: the archive, or the capture streams (current session)."""
    messages: int | None = None
    """Messages to expect when known in advance, else None (the end marker has the count)."""
    until: NanoDatetime
    """Nothing published after this instant is replayed (now minus the caller's delay)."""
    ack_every: int
    window: int
    ack_timeout_s: float


class ReplayProgress(WireModel):
    """Sent every few frames: how far the replay is."""

    schema_version: Literal[1] = 1
    replay_id: str
    messages: int
    frames: int
    last_timestamp: NanoDatetime | None = None


class ReplayEnd(WireModel):
    """The end-of-replay marker, always the last message of a replay."""

    schema_version: Literal[1] = 1
    replay_id: str
    reason: EndReason
    messages: int
    frames: int
    error: str | None = None


# --- Frames: many records per NATS message ---------------------------------------------------

FRAME_MAGIC = b"RXF1"
_HEAD = struct.Struct("<4sIH")  # magic, record count, subject table size
_SUBJ = struct.Struct("<H")
_REC = struct.Struct("<HQqI")  # subject index, stream sequence, publish time ns, payload length


class ReplayRecord(NamedTuple):
    """One recorded market-data message: its public subject, its capture stream sequence, the
    instant it was published (ns since the epoch, `Nats-Time-Stamp`) and the exact payload."""

    subject: str
    seq: int
    ts_ns: int
    payload: bytes


def encode_frame(records: Sequence[tuple[str, int, int, bytes]]) -> bytes:
    """Pack (subject, seq, ts_ns, payload) records into one frame body."""
    index: dict[str, int] = {}
    body: list[bytes] = []
    for subject, seq, ts_ns, payload in records:
        i = index.get(subject)
        if i is None:
            i = index[subject] = len(index)
        body.append(_REC.pack(i, seq, ts_ns, len(payload)))
        body.append(payload)
    table = [FRAME_MAGIC[:0]]
    for subject in index:
        raw = subject.encode()
        table.append(_SUBJ.pack(len(raw)))
        table.append(raw)
    return b"".join((_HEAD.pack(FRAME_MAGIC, len(records), len(index)), *table, *body))


def iter_frame(data: bytes) -> Iterator[ReplayRecord]:
    """The records of a frame body, in order; raise DecodeError if it is not a frame."""
    try:
        magic, count, nsubj = _HEAD.unpack_from(data, 0)
        if magic != FRAME_MAGIC:
            raise DecodeError("not a replay frame")
        off = _HEAD.size
        names: list[str] = []
        for _ in range(nsubj):
            (n,) = _SUBJ.unpack_from(data, off)
            off += _SUBJ.size
            names.append(data[off : off + n].decode())
            off += n
        rec, size = _REC.unpack_from, _REC.size
        for _ in range(count):
            i, seq, ts, n = rec(data, off)
            off += size
            payload = data[off : off + n]
            if len(payload) != n:
                raise DecodeError("truncated replay frame")
            yield ReplayRecord(names[i], seq, ts, payload)
            off += n
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or corrupt replay frame: {exc}") from exc


def decode_frame(data: bytes) -> list[ReplayRecord]:
    """All records of a frame body."""
    return list(iter_frame(data))
