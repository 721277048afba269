"""The archive format and the column-wise frames built from it."""

from __future__ import annotations

import io

import orjson
import pyarrow.parquet as pq
from md_replay import tape
from raxx_contracts import decode_frame
from raxx_contracts.timestamps import format_epoch_ns

T0 = 1_780_000_000_000_000_000


def _recs(n: int) -> list[tuple[str, int, int, bytes]]:
    out = []
    for i in range(n):
        sym = "AAPL" if i % 3 else "BRK.B"
        channel = "quotes" if i % 2 else "trades"
        body = orjson.dumps({"symbol": sym, "timestamp": format_epoch_ns(T0 + i - 5), "i": i})
        out.append((f"md.rt.stocks.{channel}.{sym.replace('.', '_2E')}", i + 1, T0 + i, body))
    return out


def test_parquet_keeps_every_column_and_is_zstd() -> None:
    recs = _recs(50)
    data = tape.to_parquet(recs)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = tape.read_table(data)
    assert table.column_names == [f.name for f in tape.SCHEMA]
    assert table["payload"].to_pylist() == [r[3] for r in recs]
    assert table["event_ts_ns"].to_pylist() == [r[2] - 5 for r in recs]
    assert set(table["symbol"].cast("string").to_pylist()) == {"AAPL", "BRK.B"}


def test_select_filters_channels_and_time_and_merges_in_stream_order() -> None:
    recs = _recs(100)
    a = tape.read_table(tape.to_parquet(recs[::2]))
    b = tape.read_table(tape.to_parquet(recs[1::2]))
    sel = tape.select([b, a], ["quotes"], T0 + 10, T0 + 60)
    want = [r for r in recs if ".quotes." in r[0] and T0 + 10 <= r[2] <= T0 + 60]
    assert [rec for chunk in tape.iter_records(sel) for rec in chunk] == want


def test_column_frames_equal_the_records_in_order_within_bounds() -> None:
    recs = _recs(1000)
    sel = tape.select([tape.read_table(tape.to_parquet(recs))], ["quotes", "trades"], 0, 2**62)

    def shown(subject: str) -> str:
        return subject.replace("md.rt.", "md.delayed.")

    frames = list(tape.column_frames(sel, shown, 64, 4096))
    got = [tuple(r) for body, _, _ in frames for r in decode_frame(body)]
    assert got == [(shown(r[0]), r[1], r[2], r[3]) for r in recs]
    assert all(count <= 64 for _, count, _ in frames)
    assert all(len(body) < 4096 + 64 * 30 for body, _, _ in frames)
    assert frames[-1][2] == recs[-1][2]
    assert list(tape.column_frames(sel.slice(0, 0), shown, 64, 4096)) == []
