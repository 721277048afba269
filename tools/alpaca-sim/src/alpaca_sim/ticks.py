"""Message generation for the stream engine: trades and quotes per tick, bars on minute marks."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from alpaca_sim.history import edit_past_print
from alpaca_sim.live import MINUTE_NS, SymbolState
from alpaca_sim.options import is_occ
from alpaca_sim.protocol import ts

if TYPE_CHECKING:
    from alpaca_sim.engine import Engine
    from alpaca_sim.streams import Connection

TRADE_SHARE = 0.35
CORRECTION_P = 0.0005
ONE_SIDED_P = 0.05
"""Share of stock quotes that IEX connections get with one side empty (price and size 0):
IEX often has no order on one side; SIP consolidates every venue and always has both."""


def _round(price: float) -> float:
    return round(price, 2) if price >= 1.0 else round(price, 4)


def emit_ticks(engine: Engine, rng: np.random.Generator, n: int, now_ns: int, span_ns: int) -> None:
    """Generate `n` trades/quotes spread over the subscribed symbols and hand them out.

    Prices, quotes and times are computed with numpy for the whole tick; the Python loop only
    builds the wire dicts (the sim must sustain 100k+ messages/s from one process).
    """
    targets = engine.targets
    px, anchor, half = engine.price_arrays()
    idx = rng.integers(0, len(targets), n)
    cur = px[idx]
    moved = cur * np.exp(0.0003 * rng.standard_normal(n) + 0.002 * np.log(anchor[idx] / cur))
    moved = np.where(moved >= 1.0, np.round(moved, 2), np.round(moved, 4))
    u = rng.random(n)
    is_trade = u < TRADE_SHARE
    px[idx[is_trade]] = moved[is_trade]  # trades move the walk; the last one per symbol wins
    spread = half[idx]
    bid = np.round(np.maximum(cur - spread, 0.0), 2)
    ask = np.round(cur + spread, 2)
    lots = rng.integers(1, 10, n)
    step = max(span_ns // n, 1)
    base = max(now_ns - step * n, engine.last_event_ns + 1)  # event times never go backwards
    t = base + step * np.arange(n, dtype=np.int64)
    engine.last_event_ns = int(t[-1])
    secs, nanos = (t // 1_000_000_000).tolist(), (t % 1_000_000_000).tolist()
    idx_l, u_l, lots_l = idx.tolist(), u.tolist(), lots.tolist()
    moved_l, bid_l, ask_l = moved.tolist(), bid.tolist(), ask.tolist()
    out: dict[Connection, list[dict[str, Any]]] = defaultdict(list)
    stamp = msgpack.Timestamp
    for i in range(n):
        tgt = targets[idx_l[i]]
        st = tgt.state
        if u_l[i] < TRADE_SHARE:
            price = moved_l[i]
            size = lots_l[i] if tgt.options else lots_l[i] * 100
            if tgt.wants_bars:
                tid = st.trade(price, size, int(t[i]))
            else:
                st.trade_id += 1
                tid = st.trade_id
            conns = tgt.trade_conns
            if not conns:
                continue
            if tgt.options:
                msg: dict[str, Any] = {
                    "T": "t", "S": st.symbol, "t": stamp(secs[i], nanos[i]), "p": price,
                    "s": size, "x": st.exchange, "c": "I",
                }  # fmt: skip
            else:
                msg = {
                    "T": "t", "S": st.symbol, "i": tid, "x": st.exchange, "p": price, "s": size,
                    "c": ["@"], "t": stamp(secs[i], nanos[i]), "z": st.tape,
                }  # fmt: skip
            for c in conns:
                out[c].append(msg)
            if u_l[i] < CORRECTION_P and not tgt.options:
                extra = _correction(st, tid, price, size, msg["t"], u_l[i] < CORRECTION_P / 2)
                for c in conns:
                    out[c].append(extra)
        else:
            conns = tgt.quote_conns
            if not conns:
                continue
            lot = lots_l[i]
            if tgt.options:
                msg = {
                    "T": "q", "S": st.symbol, "t": stamp(secs[i], nanos[i]), "bx": st.exchange,
                    "bp": bid_l[i], "bs": lot, "ax": st.exchange, "ap": ask_l[i], "as": 10 - lot,
                    "c": "A",
                }  # fmt: skip
            else:
                msg = {
                    "T": "q", "S": st.symbol, "bx": "V", "bp": bid_l[i], "bs": lot * 100,
                    "ax": "V", "ap": ask_l[i], "as": (10 - lot) * 100, "c": ["R"],
                    "z": st.tape, "t": stamp(secs[i], nanos[i]),
                }  # fmt: skip
            if u_l[i] > 1.0 - ONE_SIDED_P and not tgt.options:
                # IEX had no order on one side: that side is 0 on IEX connections only
                side = ("ap", "as") if lot % 2 else ("bp", "bs")
                iex = {**msg, side[0]: 0.0, side[1]: 0}
                for c in conns:
                    out[c].append(iex if c.endpoint.feed == "iex" else msg)
                continue
            for c in conns:
                out[c].append(msg)
    engine.write_back(np.unique(idx).tolist(), int(t[-1]))
    for conn, msgs in out.items():
        conn.send_data(msgs)


def _correction(
    st: SymbolState, tid: int, price: float, size: int, t: Any, cancel: bool
) -> dict[str, Any]:
    if cancel:
        st.cancel(tid)  # the busted print leaves the day's tape (and its close, if newest)
        return {
            "T": "x",
            "S": st.symbol,
            "i": tid,
            "x": st.exchange,
            "p": price,
            "s": size,
            "a": "C",
            "t": t,
            "z": st.tape,
        }
    fixed = _round(price * 1.001)
    done = st.correct(tid, fixed, size + 100)
    if done is None:
        st.trade_id += 1
    return {
        "T": "c",
        "S": st.symbol,
        "x": st.exchange,
        "oi": tid,
        "op": price,
        "os": size,
        "oc": ["@"],
        "ci": st.trade_id,
        "cp": fixed,
        "cs": size + 100,
        "cc": ["@"],
        "t": t,
        "z": st.tape,
    }


def _send(out: dict[Connection, list[dict[str, Any]]], conns: list[Connection], msg: Any) -> None:
    for c in conns:
        out[c].append(msg)


def minute_mark(engine: Engine, rng: np.random.Generator, minute_start_ns: int) -> None:
    """Right after a minute mark: bars of the closed minute, daily bars, LULDs, statuses."""
    out: dict[Connection, list[dict[str, Any]]] = defaultdict(list)
    prev_start = minute_start_ns - MINUTE_NS
    t_now = ts(minute_start_ns)
    for tgt in engine.targets:
        if tgt.group == "options":
            continue
        st = tgt.state
        closed = st.roll(minute_start_ns)
        if closed is None and st.prev_minute is not None and st.prev_minute.start_ns == prev_start:
            closed = st.prev_minute
        if closed is not None and (conns := tgt.conns.get("bars")):
            _send(out, conns, closed.bar(st.symbol, "b", ts(closed.start_ns)))
        if st.day.n and (conns := tgt.conns.get("dailyBars")):
            _send(out, conns, st.day.bar(st.symbol, "d", ts(st.day.start_ns)))
        if conns := tgt.conns.get("lulds"):
            up, down = _round(st.price * 1.05), _round(st.price * 0.95)
            _send(
                out,
                conns,
                {"T": "l", "S": st.symbol, "u": up, "d": down, "i": "B", "t": t_now, "z": st.tape},
            )
        if (conns := tgt.conns.get("statuses")) and rng.random() < 0.2:
            _send(out, conns, _status(st, t_now, rng.random() < 0.5))
    for conn, msgs in out.items():
        conn.send_data(msgs)


def _status(st: SymbolState, t: Any, halt: bool) -> dict[str, Any]:
    if halt:
        code, text, reason, reason_text = "H", "Trading Halt", "T1", "Halt News Pending"
    else:
        code, text, reason, reason_text = "T", "Trading Resumption", "", ""
    return {
        "T": "s",
        "S": st.symbol,
        "sc": code,
        "sm": text,
        "rc": reason,
        "rm": reason_text,
        "t": t,
        "z": st.tape,
    }


def half_minute_mark(engine: Engine, rng: np.random.Generator, minute_start_ns: int) -> None:
    """After a half-minute mark: an updated bar for the previous minute when a late trade came."""
    out: dict[Connection, list[dict[str, Any]]] = defaultdict(list)
    for tgt in engine.targets:
        conns = tgt.conns.get("updatedBars")
        prev = tgt.state.prev_minute
        if not conns or prev is None or prev.start_ns != minute_start_ns - MINUTE_NS:
            continue
        if rng.random() < 0.3:
            prev.add(prev.c, 100)  # the late trade
            _send(out, conns, prev.bar(tgt.symbol, "u", ts(prev.start_ns)))
    for conn, msgs in out.items():
        conn.send_data(msgs)


def publish(engine: Engine, body: dict[str, Any], now_ns: int) -> int:
    """Push one caller-defined message to every listener of its symbol; update the live state."""
    kind = body["type"]
    symbol = body["symbol"]
    group = body.get("group")
    st = engine.sim.live.state(symbol)
    t_ns = int(body.get("t_ns") or now_ns)
    t = ts(t_ns)
    options = is_occ(symbol)
    if kind == "trade":
        price, size = float(body["price"]), int(body.get("size", 100))
        tid = st.trade(price, size, t_ns)
        channel = "trades"
        msg: dict[str, Any] = {
            "T": "t",
            "S": symbol,
            "t": t,
            "p": price,
            "s": size,
            "x": body.get("exchange", st.exchange),
        }
        msg |= (
            {"c": "I"} if options else {"i": tid, "c": body.get("conditions", ["@"]), "z": st.tape}
        )
    elif kind == "quote":
        # a side of 0 is a one-sided quote (IEX with no order on that side)
        bid, ask = float(body["bid"]), float(body["ask"])
        bs = int(body.get("bid_size", 100 if bid else 0))
        as_ = int(body.get("ask_size", 100 if ask else 0))
        st.quote(bid, ask, bs, as_, t_ns)
        st.price = _round((bid + ask) / 2) if options else st.price
        channel = "quotes"
        msg = {
            "T": "q",
            "S": symbol,
            "t": t,
            "bx": body.get("bid_exchange", "V"),
            "bp": bid,
            "bs": bs,
            "ax": body.get("ask_exchange", "V"),
            "ap": ask,
            "as": as_,
        }
        msg |= {"c": "A"} if options else {"c": body.get("conditions", ["R"]), "z": st.tape}
    elif kind in ("bar", "dailyBar", "updatedBar"):
        channel = {"bar": "bars", "dailyBar": "dailyBars", "updatedBar": "updatedBars"}[kind]
        o, c = float(body["open"]), float(body["close"])
        msg = {
            "T": {"bars": "b", "dailyBars": "d", "updatedBars": "u"}[channel],
            "S": symbol,
            "o": o,
            "h": float(body.get("high", max(o, c))),
            "l": float(body.get("low", min(o, c))),
            "c": c,
            "v": int(body.get("volume", 100)),
            "t": t,
            "n": int(body.get("trade_count", 1)),
            "vw": float(body.get("vwap", c)),
        }
    elif kind == "status":
        channel = "statuses"
        msg = _status(st, t, bool(body.get("halt", True)))
    elif kind in ("correction", "cancel") and body.get("date"):
        # a print of a closed session: its last standing print moves the official close
        channel = "trades"
        new = None if kind == "cancel" else (float(body["price"]), int(body.get("size", 100)))
        trade_id = int(body["trade_id"]) if body.get("trade_id") is not None else None
        day = date.fromisoformat(str(body["date"]))
        now = datetime.fromtimestamp(now_ns / 1e9, UTC)
        past = edit_past_print(engine.sim.market, symbol, day, trade_id, new, now)
        if new is None:
            msg = {
                "T": "x", "S": symbol, "i": past.trade_id, "x": "V", "p": past.price,
                "s": past.size, "a": body.get("action", "C"), "t": t, "z": past.tape,
            }  # fmt: skip
        else:  # the corrected print keeps its place (and id) in the session's tape
            msg = {
                "T": "c", "S": symbol, "x": "V", "oi": past.trade_id, "op": past.price,
                "os": past.size, "oc": ["@"], "ci": past.trade_id, "cp": new[0], "cs": new[1],
                "cc": body.get("conditions", ["@"]), "t": t, "z": past.tape,
            }  # fmt: skip
    elif kind in ("correction", "cancel"):
        # both reach every `trades` listener, and change the day's tape like Alpaca's would
        channel = "trades"
        tid = int(body.get("trade_id") or st.last_id() or 0)
        if kind == "cancel":
            old = st.cancel(tid)
            price, size = old if old else (float(body["price"]), int(body.get("size", 100)))
            msg = {
                "T": "x", "S": symbol, "i": tid, "x": st.exchange, "p": price, "s": size,
                "a": body.get("action", "C"), "t": t, "z": st.tape,
            }  # fmt: skip
        else:
            new_price, new_size = float(body["price"]), int(body.get("size", 100))
            done = st.correct(tid, new_price, new_size)
            if done is None:
                raise ValueError(f"no standing trade {tid} of {symbol} to correct")
            new_id, old_price, old_size = done
            msg = {
                "T": "c", "S": symbol, "x": st.exchange, "oi": tid, "op": old_price,
                "os": old_size, "oc": ["@"], "ci": new_id, "cp": new_price, "cs": new_size,
                "cc": body.get("conditions", ["@"]), "t": t, "z": st.tape,
            }  # fmt: skip
    elif kind == "luld":
        channel = "lulds"
        msg = {
            "T": "l", "S": symbol, "u": float(body["up"]), "d": float(body["down"]),
            "i": body.get("indicator", "B"), "t": t, "z": st.tape,
        }  # fmt: skip
    elif kind == "imbalance":
        channel = "imbalances"
        msg = {"T": "i", "S": symbol, "p": float(body["price"]), "t": t, "z": st.tape}
    else:
        raise ValueError(f"unknown type {kind!r}")
    engine.invalidate_prices()
    conns = engine.listeners(group, symbol, channel)
    for conn in conns:
        conn.send_data([msg])
    return len(conns)
