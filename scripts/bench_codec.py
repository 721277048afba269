"""Measure wire-codec candidates for the hub's hot path; prints ns/message for each.

Run: `uv run python scripts/bench_codec.py`. Writes `.bench/codec.json`.
"""

from __future__ import annotations

import json
import timeit
from pathlib import Path

import msgspec
import orjson
from raxx_contracts import NanoDatetime, Quote, decode, dumps, encode
from raxx_contracts.codec import decimal_str
from raxx_contracts.timestamps import format_epoch_ns

N = 100_000
TS_NS = NanoDatetime.parse("2026-11-25T14:30:00.123456789Z").epoch_ns()


class QuoteStruct(msgspec.Struct):
    schema_version: int
    symbol: str
    timestamp: str
    feed: str
    bid_price: str
    bid_size: int
    bid_exchange: str
    ask_price: str
    ask_size: int
    ask_exchange: str
    conditions: list[str]
    tape: str


def as_dict() -> dict[str, object]:
    return {
        "schema_version": 1, "symbol": "AAPL", "timestamp": format_epoch_ns(TS_NS), "feed": "iex",
        "bid_price": decimal_str(172.35), "bid_size": 100, "bid_exchange": "V",
        "ask_price": decimal_str(172.36), "ask_size": 200, "ask_exchange": "V",
        "conditions": ["R"], "tape": "C",
    }  # fmt: skip


def main() -> None:
    prebuilt = as_dict()
    model = Quote.model_validate(prebuilt)
    struct = QuoteStruct(**as_dict())  # type: ignore[arg-type]
    wire = encode(model)
    enc = msgspec.json.Encoder()
    dec = msgspec.json.Decoder(QuoteStruct)
    cases = {
        "build dict + raxx_contracts.dumps (orjson)": lambda: dumps(as_dict()),
        "build dict only (timestamp text, decimal strings)": as_dict,
        "orjson.dumps(prebuilt dict)": lambda: orjson.dumps(prebuilt),
        "msgspec Struct encode": lambda: enc.encode(struct),
        "pydantic model_dump_json": lambda: model.model_dump_json(),
        "pydantic build + encode": lambda: encode(Quote.model_validate(as_dict())),
        "decode pydantic (raxx_contracts.decode)": lambda: decode(Quote, wire),
        "decode msgspec Struct": lambda: dec.decode(wire),
        "decode orjson.loads (untyped)": lambda: orjson.loads(wire),
    }
    results: dict[str, float] = {}
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=N, repeat=3)) / N * 1e9
        results[name] = round(best, 1)
        print(f"{name:45s} {best:8.0f} ns/msg  ({1e9 / best:,.0f}/s per core)")
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "codec.json").write_text(json.dumps({"ns_per_msg": results}, indent=2))
    print(f"payload {len(wire)} bytes; price {model.bid_price}")


if __name__ == "__main__":
    main()
