"""Message generation for the stream engine: trades and quotes per tick, bars on minute marks."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from alpaca_sim.live import MINUTE_NS, SymbolState
from alpaca_sim.protocol import ts

if TYPE_CHECKING:
    from alpaca_sim.engine import Engine
    from alpaca_sim.streams import Connection

TRADE_SHARE = 0.35
CORRECTION_P = 0.0005


def _round(price: float) -> float:
    return round(price, 2) if price >= 1.0 else round(price, 4)


def emit_ticks(engine: Engine, rng: np.random.Generator, n: int, now_ns: int, span_ns: int) -> None:
    """Generate `n` trades/quotes spread over the subscribed symbols and hand them out."""
    targets = engine.targets
    idx = rng.integers(0, len(targets), n).tolist()
    z = rng.standard_normal(n).tolist()
    u = rng.random(n).tolist()
    lots = rng.integers(1, 10, n).tolist()
    step = max(span_ns // n, 1)
    base = max(now_ns - step * n, engine.last_event_ns + 1)  # event times never go backwards
    engine.last_event_ns = base + step * (n - 1)
    out: dict[Connection, list[dict[str, Any]]] = defaultdict(list)
    live = engine.sim.live
    for i in range(n):
        tgt = targets[idx[i]]
        st = tgt.state
        t_ns = base + step * i
        t = ts(t_ns)
        options = tgt.group == "options"
        if u[i] < TRADE_SHARE:
            price = live.step(st, z[i])
            size = lots[i] if options else lots[i] * 100
            tid = st.trade(price, size, t_ns)
            conns = tgt.conns.get("trades")
            if not conns:
                continue
            if options:
                msg: dict[str, Any] = {
                    "T": "t",
                    "S": st.symbol,
                    "t": t,
                    "p": price,
                    "s": size,
                    "x": st.exchange,
                    "c": "I",
                }
            else:
                msg = {
                    "T": "t",
                    "S": st.symbol,
                    "i": tid,
                    "x": st.exchange,
                    "p": price,
                    "s": size,
                    "c": ["@"],
                    "t": t,
                    "z": st.tape,
                }
            for c in conns:
                out[c].append(msg)
            if not options and u[i] < CORRECTION_P:
                extra = _correction(st, tid, price, size, t, u[i] < CORRECTION_P / 2)
                for c in conns:
                    out[c].append(extra)
        else:
            mid = live.step(st, z[i] * 0.5) if options else st.price
            half = max(0.01, _round(st.spread / 2))
            bid, ask = _round(max(mid - half, 0.0)), _round(mid + half)
            st.quote(bid, ask, lots[i] * 100, (10 - lots[i]) * 100, t_ns)
            conns = tgt.conns.get("quotes")
            if not conns:
                continue
            if options:
                msg = {
                    "T": "q",
                    "S": st.symbol,
                    "t": t,
                    "bx": st.exchange,
                    "bp": bid,
                    "bs": st.bid_size // 100,
                    "ax": st.exchange,
                    "ap": ask,
                    "as": st.ask_size // 100,
                    "c": "A",
                }
            else:
                msg = {
                    "T": "q",
                    "S": st.symbol,
                    "bx": "V",
                    "bp": bid,
                    "bs": st.bid_size,
                    "ax": "V",
                    "ap": ask,
                    "as": st.ask_size,
                    "c": ["R"],
                    "z": st.tape,
                    "t": t,
                }
            for c in conns:
                out[c].append(msg)
    for conn, msgs in out.items():
        conn.send_data(msgs)


def _correction(
    st: SymbolState, tid: int, price: float, size: int, t: Any, cancel: bool
) -> dict[str, Any]:
    if cancel:
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
        "cp": price,
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
    options = symbol[-9:-8] in ("C", "P") and symbol[-8:].isdigit()
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
        bid, ask = float(body["bid"]), float(body["ask"])
        bs, as_ = int(body.get("bid_size", 100)), int(body.get("ask_size", 100))
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
    else:
        raise ValueError(f"unknown type {kind!r}")
    conns = engine.listeners(group, symbol, channel)
    for conn in conns:
        conn.send_data([msg])
    return len(conns)
