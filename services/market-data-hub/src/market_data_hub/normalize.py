"""Upstream Alpaca stream messages -> contract payload dicts (the hot path).

Each function returns a plain dict whose keys match the contract model exactly, so
`raxx_contracts.dumps(d)` is byte-compatible with `raxx_contracts.encode(Model(**d))` and
consumers `decode(Quote, ...)` it. No pydantic on this path: it would cost ~9 us per message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from raxx_contracts import AssetClass, BarKind, Channel, NanoDatetime
from raxx_contracts.codec import decimal_str

_sec_cache: dict[int, str] = {}
_EPOCH_CACHE: dict[str, int] = {}


def _base(seconds: int) -> str:
    base = _sec_cache.get(seconds)
    if base is None:
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _sec_cache[seconds] = base
    return base


def rfc3339_ns(seconds: int, nanos: int) -> str:
    """RFC 3339 UTC text, formatted exactly as NanoDatetime.rfc3339 does."""
    base = _base(seconds)
    if nanos % 1000:
        return f"{base}.{nanos:09d}Z"
    if nanos:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}Z"


def timestamp_text(t: Any) -> str:
    """Upstream `t` (epoch ns, msgpack Timestamp or RFC 3339 text) -> RFC 3339 with ns."""
    if type(t) is int:  # the stream's msgpack frames (decode_frame unpacks to epoch ns)
        secs, nanos = divmod(t, 1_000_000_000)
        base = _sec_cache.get(secs) or _base(secs)
        if nanos % 1000:
            return f"{base}.{nanos:09d}Z"
        if nanos:
            return f"{base}.{nanos // 1000:06d}Z"
        return f"{base}Z"
    seconds = getattr(t, "seconds", None)
    if seconds is not None:
        return rfc3339_ns(seconds, t.nanoseconds)
    if isinstance(t, str):
        return NanoDatetime.parse(t).rfc3339()
    if isinstance(t, int) and not isinstance(t, bool):
        return rfc3339_ns(*divmod(t, 1_000_000_000))
    raise ValueError(f"unsupported timestamp {type(t).__name__}")


def parse_epoch_ns(text: str) -> int:
    """RFC 3339 text as written by :func:`rfc3339_ns` (or any RFC 3339) -> epoch ns."""
    head = text[:19]
    secs = _EPOCH_CACHE.get(head)
    if secs is None:
        if len(_EPOCH_CACHE) > 4096:
            _EPOCH_CACHE.clear()
        secs = int(datetime.fromisoformat(head + "+00:00").timestamp())
        _EPOCH_CACHE[head] = secs
    rest = text[19:]
    if rest == "Z":
        return secs * 1_000_000_000
    if rest[:1] == "." and rest[-1:] == "Z" and rest[1:-1].isdigit():
        frac = rest[1:-1]
        return secs * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
    return NanoDatetime.parse(text).epoch_ns()


_TS_KEY = b'"timestamp":"'


def event_ns(payload: bytes) -> int:
    """Event time of an encoded contract payload, without a full JSON decode."""
    i = payload.index(_TS_KEY) + len(_TS_KEY)
    j = payload.index(b'"', i)
    return parse_epoch_ns(payload[i:j].decode())


def _conds(c: Any) -> list[str]:
    if c is None:
        return []
    if isinstance(c, str):
        return [c]
    return [str(x) for x in c]


def stock_quote(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`q` on a stock stream -> Quote. A side priced 0 (no order there, common on IEX) is not
    a price: its price and size become None and the quote is `one_sided`."""
    bp = m["bp"]
    ap = m["ap"]
    one_sided = False
    if bp:
        bid_price: str | None = decimal_str(bp)
        bid_size: int | None = int(m["bs"])
    else:
        bid_price = bid_size = None
        one_sided = True
    if ap:
        ask_price: str | None = decimal_str(ap)
        ask_size: int | None = int(m["as"])
    else:
        ask_price = ask_size = None
        one_sided = True
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "bid_price": bid_price,
        "bid_size": bid_size,
        "bid_exchange": m.get("bx") or "",
        "ask_price": ask_price,
        "ask_size": ask_size,
        "ask_exchange": m.get("ax") or "",
        "conditions": _conds(m.get("c")),
        "tape": m.get("z") or "",
        "one_sided": one_sided,
    }


def stock_trade(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`t` on a stock stream -> Trade."""
    tid = m.get("i")
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "price": decimal_str(m["p"]),
        "size": int(m["s"]),
        "exchange": m.get("x") or "",
        "trade_id": int(tid) if tid is not None else None,
        "conditions": _conds(m.get("c")),
        "tape": m.get("z") or "",
    }


def _opt_int(v: Any) -> int | None:
    return int(v) if v is not None else None


def correction(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`c` -> TradeCorrection."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "exchange": m.get("x") or "",
        "original_trade_id": _opt_int(m.get("oi")),
        "original_price": decimal_str(m["op"]),
        "original_size": int(m["os"]),
        "original_conditions": _conds(m.get("oc")),
        "corrected_trade_id": _opt_int(m.get("ci")),
        "corrected_price": decimal_str(m["cp"]),
        "corrected_size": int(m["cs"]),
        "corrected_conditions": _conds(m.get("cc")),
        "tape": m.get("z") or "",
    }


def cancel(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`x` -> TradeCancel."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "trade_id": _opt_int(m.get("i")),
        "exchange": m.get("x") or "",
        "price": decimal_str(m["p"]),
        "size": int(m["s"]),
        "action": m.get("a") or "",
        "tape": m.get("z") or "",
    }


def luld(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`l` -> Luld."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "limit_up_price": decimal_str(m["u"]),
        "limit_down_price": decimal_str(m["d"]),
        "indicator": m.get("i") or "",
        "tape": m.get("z") or "",
    }


def imbalance(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`i` -> Imbalance."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "price": decimal_str(m["p"]),
        "tape": m.get("z") or "",
    }


def bar(m: dict[str, Any], feed: str, kind: BarKind, backfill: bool = False) -> dict[str, Any]:
    """`b`/`u`/`d` (or a REST bar with an `S`) -> Bar."""
    n = m.get("n")
    vw = m.get("vw")
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "kind": str(kind),
        "open": decimal_str(m["o"]),
        "high": decimal_str(m["h"]),
        "low": decimal_str(m["l"]),
        "close": decimal_str(m["c"]),
        "volume": int(m["v"]),
        "trade_count": int(n) if n is not None else None,
        "vwap": decimal_str(vw) if vw is not None else None,
        "backfill": backfill,
    }


def status(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`s` -> TradingStatus."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "status_code": str(m["sc"]),
        "status_message": m.get("sm") or "",
        "reason_code": m.get("rc") or "",
        "reason_message": m.get("rm") or "",
        "tape": m.get("z") or "",
    }


def option_quote(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`q` on the option stream -> OptionQuote."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "bid_price": decimal_str(m["bp"]),
        "bid_size": int(m["bs"]),
        "bid_exchange": m.get("bx") or "",
        "ask_price": decimal_str(m["ap"]),
        "ask_size": int(m["as"]),
        "ask_exchange": m.get("ax") or "",
        "condition": m.get("c") or "",
    }


def option_trade(m: dict[str, Any], feed: str) -> dict[str, Any]:
    """`t` on the option stream -> OptionTrade."""
    return {
        "schema_version": 1,
        "symbol": m["S"],
        "timestamp": timestamp_text(m["t"]),
        "feed": feed,
        "price": decimal_str(m["p"]),
        "size": int(m["s"]),
        "exchange": m.get("x") or "",
        "condition": m.get("c") or "",
    }


Converter = Callable[[dict[str, Any], str], dict[str, Any]]


def _minute_bar(m: dict[str, Any], feed: str) -> dict[str, Any]:
    return bar(m, feed, BarKind.MINUTE)


def _updated_bar(m: dict[str, Any], feed: str) -> dict[str, Any]:
    return bar(m, feed, BarKind.UPDATED)


def _daily_bar(m: dict[str, Any], feed: str) -> dict[str, Any]:
    return bar(m, feed, BarKind.DAILY)


Route = tuple[Channel, Converter, Channel]
"""(channel published on, converter, channel whose upstream subscription carries it)."""

_CONVERTERS: dict[AssetClass, dict[str, Route]] = {
    AssetClass.STOCKS: {
        "q": (Channel.QUOTES, stock_quote, Channel.QUOTES),
        "t": (Channel.TRADES, stock_trade, Channel.TRADES),
        "b": (Channel.BARS, _minute_bar, Channel.BARS),
        "u": (Channel.BARS, _updated_bar, Channel.BARS),
        "d": (Channel.DAILYBARS, _daily_bar, Channel.DAILYBARS),
        "s": (Channel.STATUSES, status, Channel.STATUSES),
        # corrections and cancels come with `trades` upstream (never subscribed alone)
        "c": (Channel.CORRECTIONS, correction, Channel.TRADES),
        "x": (Channel.CANCELS, cancel, Channel.TRADES),
        "l": (Channel.LULDS, luld, Channel.LULDS),
        "i": (Channel.IMBALANCES, imbalance, Channel.IMBALANCES),
    },
    AssetClass.OPTIONS: {
        "q": (Channel.QUOTES, option_quote, Channel.QUOTES),
        "t": (Channel.TRADES, option_trade, Channel.TRADES),
    },
}


def converters(asset: AssetClass) -> dict[str, Route]:
    """Upstream message type `T` -> route for one asset class (the hot-path table). A type
    missing here is not published; the publisher counts it by type."""
    return _CONVERTERS[asset]


def convert(
    asset: AssetClass, m: dict[str, Any], feed: str
) -> tuple[Channel, dict[str, Any]] | None:
    """Route one upstream data message; None for types the hub does not publish."""
    route = _CONVERTERS[asset].get(m.get("T"))  # type: ignore[arg-type]
    if route is None:
        return None
    channel, fn, _ = route
    return channel, fn(m, feed)
