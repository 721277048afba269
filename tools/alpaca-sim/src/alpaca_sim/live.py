"""Live per-symbol state: the random walk that streams print and the latest endpoints read."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alpaca_sim.calendar import NY
from alpaca_sim.market import NS, Market, stable_hash
from alpaca_sim.options import is_occ, option_quote_from_underlying

MINUTE_NS = 60 * NS
RECENT_TRADES = 1024


@dataclass
class Agg:
    """A bar being accumulated from live trades."""

    start_ns: int
    o: float = 0.0
    h: float = 0.0
    low: float = 0.0
    c: float = 0.0
    v: int = 0
    n: int = 0
    pv: float = 0.0

    def add(self, price: float, size: int) -> None:
        """Account one trade."""
        if self.n == 0:
            self.o = self.h = self.low = price
        else:
            self.h = max(self.h, price)
            self.low = min(self.low, price)
        self.c = price
        self.v += size
        self.n += 1
        self.pv += price * size

    def bar(self, symbol: str, kind: str, t: object) -> dict[str, object]:
        """Wire form (`T` = b, d or u); `t` is already encoded by the caller's clock."""
        vw = round(self.pv / self.v, 4) if self.v else self.c
        return {
            "T": kind,
            "S": symbol,
            "o": self.o,
            "h": self.h,
            "l": self.low,
            "c": self.c,
            "v": self.v,
            "t": t,
            "n": self.n,
            "vw": vw,
        }


@dataclass
class SymbolState:
    """Last trade/quote and running bars of one symbol."""

    symbol: str
    anchor: float
    price: float
    spread: float
    tape: str
    exchange: str
    trade_id: int
    last_trade_ns: int = 0
    last_trade_size: int = 100
    bid: float = 0.0
    ask: float = 0.0
    bid_size: int = 100
    ask_size: int = 100
    last_quote_ns: int = 0
    minute: Agg = field(default_factory=lambda: Agg(0))
    prev_minute: Agg | None = None
    day: Agg = field(default_factory=lambda: Agg(0))
    recent: dict[int, tuple[float, int]] = field(default_factory=dict)
    """Trade id -> (price, size) of the day's last RECENT_TRADES prints still standing (what
    a correction or cancel can reach)."""

    def roll(self, t_ns: int) -> Agg | None:
        """Start a new minute (and day) if `t_ns` is past the current one; return the closed one."""
        start = t_ns - t_ns % MINUTE_NS
        if start == self.minute.start_ns:
            return None
        closed = self.minute if self.minute.n else None
        if closed is not None:
            self.prev_minute = closed
        self.minute = Agg(start)
        day_start = _day_start_ns(t_ns)
        if day_start != self.day.start_ns:
            self.day = Agg(day_start)
        return closed

    def trade(self, price: float, size: int, t_ns: int) -> int:
        """Record a trade and return its id."""
        self.roll(t_ns)
        self.price = price
        self.trade_id += 1
        self.last_trade_ns = t_ns
        self.last_trade_size = size
        self.minute.add(price, size)
        self.day.add(price, size)
        self.recent[self.trade_id] = (price, size)
        self.recent.pop(self.trade_id - RECENT_TRADES, None)
        return self.trade_id

    def last_id(self) -> int | None:
        """Id of the newest standing print (None when none is known)."""
        return max(self.recent) if self.recent else None

    def cancel(self, tid: int) -> tuple[float, int] | None:
        """Bust print `tid`: it never happened. If it was the newest, the day's (and minute's)
        close falls back to the newest standing print. Returns the busted (price, size)."""
        old = self.recent.pop(tid, None)
        if old is None:
            return None
        self.day.v = max(0, self.day.v - old[1])
        if self.recent and tid > max(self.recent):
            self._set_close(self.recent[max(self.recent)][0])
        return old

    def correct(self, tid: int, price: float, size: int) -> tuple[int, float, int] | None:
        """Replace print `tid` by a corrected one (new id); the close moves if it was the
        newest. Returns (new id, original price, original size)."""
        old = self.recent.get(tid)
        if old is None:
            return None
        newest = tid == max(self.recent)
        del self.recent[tid]
        self.trade_id += 1
        self.recent[self.trade_id] = (price, size)
        self.day.v = max(0, self.day.v - old[1] + size)
        self.day.h, self.day.low = max(self.day.h, price), min(self.day.low, price)
        if newest:
            self._set_close(price)
        return self.trade_id, old[0], old[1]

    def _set_close(self, price: float) -> None:
        self.day.c = price
        if self.minute.n:
            self.minute.c = price
        self.price = price

    def quote(self, bid: float, ask: float, bid_size: int, ask_size: int, t_ns: int) -> None:
        """Record a quote."""
        self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size
        self.last_quote_ns = t_ns


def _day_start_ns(t_ns: int) -> int:
    local = datetime.fromtimestamp(t_ns / NS, NY)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp()) * NS


class LiveMarket:
    """Per-symbol live state, anchored on the deterministic history at first use."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.symbols: dict[str, SymbolState] = {}

    def state(self, symbol: str) -> SymbolState:
        """The live state of `symbol`, created from the history's last price on first use."""
        st = self.symbols.get(symbol)
        if st is not None:
            return st
        now = datetime.now(UTC)
        h = stable_hash(self.market.seed, "live", symbol)
        if is_occ(symbol):
            price, bid, ask = option_quote_from_underlying(self, symbol, now)
            last_ns = time.time_ns()
            tape, exchange = "", "COHMAXIWZ"[h % 9]
        else:
            price, last_ns = self.market.last_close(symbol, now)
            half = max(0.01, round(price * 0.0002, 2))
            bid, ask = round(price - half, 2), round(price + half, 2)
            tape, exchange = "ABC"[h % 3], "V"
        st = SymbolState(
            symbol=symbol,
            anchor=price,
            price=price,
            spread=max(ask - bid, 0.01),
            tape=tape,
            exchange=exchange,
            trade_id=(h % 1000) * 10**9,
            last_trade_ns=last_ns,
            bid=bid,
            ask=ask,
            last_quote_ns=last_ns,
        )
        self.symbols[symbol] = st
        return st

    def step(self, st: SymbolState, z: float) -> float:
        """Move the walk one step (slightly mean-reverting to the anchor) and return the price."""
        drift = 0.002 * math.log(st.anchor / st.price) if st.price > 0 else 0.0
        price = st.price * math.exp(0.0003 * z + drift)
        return round(price, 2) if price >= 1.0 else round(price, 4)

    def reset(self) -> None:
        """Forget every live state (the next use re-anchors on history)."""
        self.symbols.clear()
