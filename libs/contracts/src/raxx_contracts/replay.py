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
import sys
from array import array
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
#
# Columnar, little-endian, so both ends work on whole arrays instead of record by record:
#   "RXF1" | u32 n | u16 k | k x (u16 len | subject utf-8)
#   | n x u16 subject index | n x u64 sequence | n x i64 publish time ns
#   | (n+1) x u32 payload offsets (first 0, last = blob length) | blob (payloads back to back)

FRAME_MAGIC = b"RXF1"
_HEAD = struct.Struct("<4sIH")  # magic, record count, subject table size
_SUBJ = struct.Struct("<H")
_LITTLE = sys.byteorder == "little"


class ReplayRecord(NamedTuple):
    """One recorded market-data message: its public subject, its capture stream sequence, the
    instant it was published (ns since the epoch, `Nats-Time-Stamp`) and the exact payload."""

    subject: str
    seq: int
    ts_ns: int
    payload: bytes


def _le(arr: array[int]) -> bytes:
    if not _LITTLE:
        arr.byteswap()
    return arr.tobytes()


def frame_from_columns(
    names: Sequence[str], index: bytes, seq: bytes, ts: bytes, offsets: bytes, blob: bytes
) -> bytes:
    """Assemble a frame from its columns, already little-endian bytes (u16 subject indices
    into `names`, u64 sequences, i64 times, n+1 u32 offsets into `blob`)."""
    n = len(index) // 2
    table = b"".join(_SUBJ.pack(len(raw)) + raw for raw in (name.encode() for name in names))
    return b"".join((_HEAD.pack(FRAME_MAGIC, n, len(names)), table, index, seq, ts, offsets, blob))


def encode_frame(records: Sequence[tuple[str, int, int, bytes]]) -> bytes:
    """Pack (subject, seq, ts_ns, payload) records into one frame body."""
    names: dict[str, int] = {}
    index = array("H", [names.setdefault(r[0], len(names)) for r in records])
    offsets = array("I", [0])
    total = 0
    for r in records:
        total += len(r[3])
        offsets.append(total)
    return frame_from_columns(
        list(names),
        _le(index),
        _le(array("Q", [r[1] for r in records])),
        _le(array("q", [r[2] for r in records])),
        _le(offsets),
        b"".join(r[3] for r in records),
    )


def _column(data: bytes, off: int, code: str, count: int) -> tuple[array[int], int]:
    col = array(code)
    end = off + col.itemsize * count
    if end > len(data):
        raise DecodeError("truncated replay frame")
    col.frombytes(data[off:end])
    if not _LITTLE:
        col.byteswap()
    return col, end


def iter_frame(data: bytes) -> Iterator[ReplayRecord]:
    """The records of a frame body, in order; raise DecodeError if it is not a frame."""
    return iter(decode_frame(data))


class FrameColumns(NamedTuple):
    """A frame's columns: record `i` is `names[subject_index[i]]`, `seq[i]`, `ts[i]`,
    `blob[offsets[i]:offsets[i + 1]]`."""

    names: list[str]
    subject_index: array[int]
    seq: array[int]
    ts: array[int]
    offsets: array[int]
    blob: bytes


def frame_columns(data: bytes) -> FrameColumns:
    """Unpack a frame body into its columns; raise DecodeError if it is not a frame."""
    try:
        magic, n, k = _HEAD.unpack_from(data, 0)
        if magic != FRAME_MAGIC:
            raise DecodeError("not a replay frame")
        off = _HEAD.size
        names: list[str] = []
        for _ in range(k):
            (size,) = _SUBJ.unpack_from(data, off)
            off += _SUBJ.size
            names.append(data[off : off + size].decode())
            off += size
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or corrupt replay frame: {exc}") from exc
    index, off = _column(data, off, "H", n)
    seq, off = _column(data, off, "Q", n)
    ts, off = _column(data, off, "q", n)
    offsets, off = _column(data, off, "I", n + 1)
    blob = data[off:]
    if offsets[0] != 0 or offsets[-1] != len(blob) or (n and max(index) >= k):
        raise DecodeError("corrupt replay frame")
    return FrameColumns(names, index, seq, ts, offsets, blob)


def decode_frame(data: bytes) -> list[ReplayRecord]:
    """All records of a frame body, in order; raise DecodeError if it is not a frame."""
    names, index, seq, ts, offsets, blob = frame_columns(data)
    return [
        ReplayRecord(names[i], s, t, blob[a:b])
        for i, s, t, a, b in zip(index, seq, ts, offsets, offsets[1:], strict=False)
    ]
