"""The archive's file format: one zstd-compressed Parquet file per (date, asset, symbol).

Columns: `seq` (capture stream sequence), `subject` (public real-time subject), `channel`,
`symbol`, `event_ts_ns` (the payload's own timestamp), `publish_ts_ns` (`Nats-Time-Stamp`,
when the message was published live) and `payload` (the exact wire bytes, so a replay equals
the live messages byte for byte). Rows are in stream order.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from collections.abc import Callable, Iterator, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from raxx_contracts import AssetClass, NanoDatetime, encode_symbol, subjects
from raxx_contracts.replay import frame_from_columns

from md_replay.domain import Record

SCHEMA = pa.schema(
    [
        ("seq", pa.uint64()),
        ("subject", pa.dictionary(pa.int32(), pa.string())),
        ("channel", pa.dictionary(pa.int8(), pa.string())),
        ("symbol", pa.dictionary(pa.int32(), pa.string())),
        ("event_ts_ns", pa.int64()),
        ("publish_ts_ns", pa.int64()),
        ("payload", pa.binary()),
    ]
)
COMPRESSION = "zstd"
if sys.byteorder != "little":  # pragma: no cover - frames are little-endian Arrow buffers
    raise ImportError("md_replay.tape needs a little-endian host")


def date_prefix(date: dt.date) -> str:
    """Key prefix of one session."""
    return f"date={date.isoformat()}/"


def manifest_key(date: dt.date) -> str:
    """Key of a session's manifest (written last; `complete` says the session is whole)."""
    return f"{date_prefix(date)}manifest.json"


def symbol_key(date: dt.date, asset: AssetClass, symbol: str) -> str:
    """Key of one symbol's file (symbol encoded as in subjects, so any symbol is a safe key)."""
    return f"{date_prefix(date)}asset={asset}/symbol={encode_symbol(symbol)}.parquet"


def _event_ns(payload: bytes, fallback: int) -> int:
    try:
        text = orjson.loads(payload).get("timestamp")
        return NanoDatetime.parse(text).epoch_ns() if isinstance(text, str) else fallback
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return fallback


def to_parquet(records: Sequence[Record]) -> bytes:
    """One symbol's records (in stream order) as Parquet bytes."""
    parsed = [subjects.parse_market(r[0]) for r in records]
    table = pa.table(
        {
            "seq": pa.array([r[1] for r in records], pa.uint64()),
            "subject": pa.array([r[0] for r in records], pa.string()).dictionary_encode(),
            "channel": pa.array([str(p.channel) for p in parsed], pa.string()).dictionary_encode(),
            "symbol": pa.array([p.symbol for p in parsed], pa.string()).dictionary_encode(),
            "event_ts_ns": pa.array([_event_ns(r[3], r[2]) for r in records], pa.int64()),
            "publish_ts_ns": pa.array([r[2] for r in records], pa.int64()),
            "payload": pa.array([r[3] for r in records], pa.binary()),
        }
    ).cast(SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=COMPRESSION, use_dictionary=True)
    return buf.getvalue()


def read_table(data: bytes) -> pa.Table:
    """A symbol file's table."""
    return pq.read_table(pa.BufferReader(data))


def select(
    tables: Sequence[pa.Table], channels: Sequence[str], start_ns: int, until_ns: int
) -> pa.Table:
    """Rows of the wanted channels published in [start_ns, until_ns], merged in stream order."""
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables([t.cast(SCHEMA) for t in tables], promote_options="default")
    ts = table["publish_ts_ns"]
    mask = pc.and_(
        pc.and_(pc.greater_equal(ts, start_ns), pc.less_equal(ts, until_ns)),
        pc.is_in(table["channel"].cast(pa.string()), pa.array(list(channels), pa.string())),
    )
    return table.filter(mask).sort_by("seq")


def iter_records(table: pa.Table, chunk: int = 20_000) -> Iterator[list[Record]]:
    """The rows as records, a chunk at a time (bounded Python memory)."""
    for start in range(0, table.num_rows, chunk):
        part = table.slice(start, chunk)
        subj = part["subject"].cast(pa.string()).to_pylist()
        seq = part["seq"].to_pylist()
        ts = part["publish_ts_ns"].to_pylist()
        payload = part["payload"].to_pylist()
        yield list(zip(subj, seq, ts, payload, strict=True))


def _fixed(arr: pa.Array, width: int) -> bytes:
    """The exact little-endian bytes of a fixed-width array slice (zero-copy view, one copy)."""
    start = arr.offset * width
    return memoryview(arr.buffers()[1])[start : start + len(arr) * width].tobytes()


def column_frames(
    table: pa.Table, shown: Callable[[str], str], max_records: int, max_bytes: int
) -> Iterator[tuple[bytes, int, int]]:
    """Frames of `table` (already in stream order) built from whole Arrow columns, no Python
    object per record: (frame body, records, publish time of its last record). `shown` maps a
    recorded subject to the one the caller sees."""
    if not table.num_rows:
        return
    table = table.combine_chunks()
    subject = pc.dictionary_encode(table["subject"].cast(pa.string())).chunk(0)
    names = [shown(s) for s in subject.dictionary.to_pylist()]
    index = subject.indices
    seq = table["seq"].chunk(0)
    ts = table["publish_ts_ns"].chunk(0)
    payload = table["payload"].chunk(0)
    rows = table.num_rows
    i = 0
    while i < rows:
        n = min(max_records, rows - i)
        while True:
            part = payload.slice(i, n)
            offs = pa.Array.from_buffers(
                pa.int32(), n + 1, [None, part.buffers()[1]], null_count=0, offset=part.offset
            )
            first, last = offs[0].as_py(), offs[-1].as_py()
            if last - first <= max_bytes or n == 1:
                break
            n = max(1, n // 2)
        idx = index.slice(i, n)
        used = pc.unique(idx)
        local = pc.index_in(idx, used).cast(pa.uint16())
        frame_names = [names[j] for j in used.to_pylist()]
        rebased = pc.subtract(offs, pa.scalar(first, pa.int32())).cast(pa.uint32())
        blob = memoryview(part.buffers()[2])[first:last].tobytes()
        body = frame_from_columns(
            frame_names,
            _fixed(local, 2),
            _fixed(seq.slice(i, n), 8),
            _fixed(ts.slice(i, n), 8),
            _fixed(rebased, 4),
            blob,
        )
        yield body, n, ts[i + n - 1].as_py()
        i += n
