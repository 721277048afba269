"""Replay contracts: the frame codec round-trips exactly and refuses corrupt frames; requests
are bounded."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from raxx_contracts import (
    DecodeError,
    ReplayAck,
    ReplayCommand,
    ReplayRequest,
    ReplayStop,
    decode_frame,
    encode_frame,
)

SUBJECT = st.sampled_from(["md.rt.stocks.quotes.AAPL", "md.rt.stocks.trades.BRK_2EB", "md.x"])
RECORD = st.tuples(
    SUBJECT,
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(max_size=300),
)


@given(st.lists(RECORD, max_size=50))
def test_frames_round_trip_byte_for_byte(records: list[tuple[str, int, int, bytes]]) -> None:
    out = decode_frame(encode_frame(records))
    assert [(r.subject, r.seq, r.ts_ns, r.payload) for r in out] == records


def test_corrupt_or_truncated_frames_are_refused() -> None:
    frame = encode_frame([("md.rt.stocks.quotes.AAPL", 1, 2, b"payload")])
    for bad in (frame[:-1], frame[:5], b"XXXX" + frame[4:], b""):
        with pytest.raises(DecodeError):
            decode_frame(bad)


def _req(**kw: object) -> ReplayRequest:
    values: dict[str, object] = {
        "replay_id": "r1", "date": dt.date(2026, 3, 2), "symbols": ("AAPL",),
        "deliver": "_INBOX_U.X.r",
    }  # fmt: skip
    values.update(kw)
    return ReplayRequest.model_validate(values)


def test_requests_are_bounded() -> None:
    assert _req().speed is None
    for bad in (
        {"symbols": ()},
        {"symbols": tuple(f"S{i}" for i in range(101))},
        {"symbols": ("NOT A SYMBOL",)},
        {"speed": 0},
        {"speed": -1},
        {"speed": 1e9},
        {"replay_id": "has space"},
        {"replay_id": "x" * 65},
        {"channels": ()},
    ):
        with pytest.raises(ValidationError):
            _req(**bad)


def test_commands_are_told_apart_by_op() -> None:
    ta: TypeAdapter[ReplayRequest | ReplayAck | ReplayStop] = TypeAdapter(ReplayCommand)
    assert isinstance(ta.validate_json(_req().model_dump_json()), ReplayRequest)
    assert isinstance(ta.validate_json(b'{"op":"ack","replay_id":"r","frames":3}'), ReplayAck)
    assert isinstance(ta.validate_json(b'{"op":"stop","replay_id":"r"}'), ReplayStop)
    with pytest.raises(ValidationError):
        ta.validate_json(b'{"op":"ack","replay_id":"r","frames":-1}')
