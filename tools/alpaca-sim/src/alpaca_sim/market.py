"""Deterministic historical market: every value is a pure function of (seed, symbol, time).

Daily bars form a mean-reverting random walk over trading days. A trading day's minute bars
are a Brownian bridge from that day's open to its close, stretched so that their extremes are
the day's high and low; their volumes and trade counts add up to the day's. Trades and quotes
are drawn inside each minute bar so that they reproduce its open, high, low, close, volume and
trade count. Nothing here reads the clock: callers pass `now`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from alpaca_sim.calendar import NY, TradingCalendar
from alpaca_sim.late_closes import LateCloses

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
NS = 1_000_000_000
MINUTE_NS = 60 * NS


def stable_hash(*parts: object) -> int:
    """64-bit hash that does not change between processes (unlike `hash`)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def tick_round(price: F64) -> F64:
    """Cents above $1, hundredths of a cent below, like US equities."""
    return np.where(price >= 1.0, np.round(price, 2), np.round(price, 4))


@dataclass(frozen=True)
class DailySeries:
    """One symbol's daily bars over every trading day of the calendar."""

    o: F64
    h: F64
    low: F64
    c: F64
    v: I64
    n: I64
    vw: F64


@dataclass(frozen=True)
class DayPath:
    """One symbol's minute bars and trades for one trading day."""

    t: I64  # minute start, ns since epoch
    o: F64
    h: F64
    low: F64
    c: F64
    v: I64
    n: I64
    vw: F64


@dataclass(frozen=True)
class DayTrades:
    """One symbol's trades for one trading day, consistent with its minute bars."""

    t: I64
    p: F64
    s: I64
    minute: I64
    first_id: int


@lru_cache(maxsize=4)
def _ar_powers(n: int, phi: float = 0.998) -> tuple[F64, F64]:
    k = np.arange(n, dtype=np.float64)
    return phi**k, phi ** (-k)


class Market:
    """The deterministic price history of every symbol."""

    def __init__(
        self,
        seed: int,
        calendar: TradingCalendar,
        halted: list[str] | tuple[str, ...] = (),
        cache_size: int = 20_000,
    ) -> None:
        self.seed = seed
        self.calendar = calendar
        self._halted_always: set[str] = set()
        self._halted_days: set[tuple[str, date]] = set()
        for item in halted:
            sym, _, day = item.partition("@")
            if day:
                self._halted_days.add((sym, date.fromisoformat(day)))
            else:
                self._halted_always.add(sym)
        self._daily: OrderedDict[str, DailySeries] = OrderedDict()
        self._paths: OrderedDict[tuple[str, date], DayPath] = OrderedDict()
        self._trades_cache: OrderedDict[tuple[str, date], DayTrades] = OrderedDict()
        self._cache_size = cache_size
        self.late_closes = LateCloses()  # corrected closes of past sessions (/sim/late_close)

    def is_halted(self, symbol: str, day: date) -> bool:
        """No prints for `symbol` on `day` (configured, or a symbol named `HALT...`)."""
        return (
            symbol.startswith("HALT")
            or symbol in self._halted_always
            or (symbol, day) in self._halted_days
        )

    def base_price(self, symbol: str) -> float:
        """Where the walk of `symbol` is centred."""
        if symbol == "FAKEPACA":
            return 100.0
        return 10.0 + (stable_hash(self.seed, "base", symbol) % 49_000) / 100.0

    def daily(self, symbol: str) -> DailySeries:
        """Daily bars of `symbol` on every calendar trading day (cached)."""
        cached = self._daily.get(symbol)
        if cached is not None:
            self._daily.move_to_end(symbol)
            return cached
        n_days = len(self.calendar.days)
        rng = np.random.default_rng(stable_hash(self.seed, "daily", symbol))
        shocks = rng.normal(0.0, 0.018, n_days)
        up, down = _ar_powers(n_days)
        log_dev = up * np.cumsum(shocks * down)  # AR(1) without a Python loop
        base = self.base_price(symbol)
        c = tick_round(base * np.exp(log_dev))
        prev = np.concatenate(([base], c[:-1]))
        o = tick_round(prev * np.exp(rng.normal(0.0, 0.004, n_days)))
        h = tick_round(np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.008, n_days)) + 1e-4))
        low = tick_round(np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.008, n_days)) - 1e-4))
        base_volume = 200_000 + stable_hash(self.seed, "vol", symbol) % 4_800_000
        v = np.maximum(
            (base_volume * np.exp(rng.normal(0.0, 0.3, n_days))).astype(np.int64), 100_000
        )
        n = np.maximum(v // (80 + stable_hash(self.seed, "size", symbol) % 120), 4 * 390)
        vw = np.round((o + h + low + 2 * c) / 5.0, 4)
        series = DailySeries(o, h, low, c, v, n.astype(np.int64), vw)
        self._remember(self._daily, symbol, series)
        return series

    def daily_bar(
        self, symbol: str, day: date
    ) -> tuple[float, float, float, float, int, int, float]:
        """(o, h, l, c, v, n, vw) of a completed trading day."""
        s = self.daily(symbol)
        i = self.calendar.index(day)
        return (
            float(s.o[i]),
            float(s.h[i]),
            float(s.low[i]),
            float(s.c[i]),
            int(s.v[i]),
            int(s.n[i]),
            float(s.vw[i]),
        )

    def day_path(self, symbol: str, day: date) -> DayPath:
        """Minute bars of one trading day (cached)."""
        cache_key = (symbol, day)
        cached = self._paths.get(cache_key)
        if cached is not None:
            self._paths.move_to_end(cache_key)
            return cached
        o, h, low, c, v, n, _ = self.daily_bar(symbol, day)
        session = self.calendar.session(day)
        m = session.minutes
        rng = np.random.default_rng(stable_hash(self.seed, "day", symbol, day.toordinal()))
        # Brownian bridge in log space from the open to the close.
        steps = np.cumsum(rng.normal(0.0, 0.0009, m))
        frac = np.arange(1, m + 1) / m
        bridge = steps - frac * steps[-1]
        path = np.concatenate(([0.0], frac * (np.log(c) - np.log(o)) + bridge))
        pts = o * np.exp(path)
        pts[0], pts[-1] = o, c
        mo, mc = pts[:-1], pts[1:]
        wick = np.abs(rng.normal(0.0, 0.0006, (2, m))) + 1e-5
        mh = np.maximum(mo, mc) * (1 + wick[0])
        ml = np.minimum(mo, mc) * (1 - wick[1])
        top, bottom = max(o, c), min(o, c)

        def stretch(x: F64) -> F64:
            hi_max, lo_min = float(mh.max()), float(ml.min())
            up = np.where(x > top, top + (x - top) * (h - top) / (hi_max - top), x)
            return np.where(
                up < bottom, bottom - (bottom - up) * (bottom - low) / (bottom - lo_min), up
            )

        mo, mc, mh, ml = (tick_round(stretch(x)) for x in (mo, mc, mh, ml))
        weights = 1.0 + 2.0 * (np.linspace(-1, 1, m) ** 2)  # U-shaped intraday activity
        weights /= weights.sum()
        mn = 4 + rng.multinomial(n - 4 * m, weights)
        mv = mn + rng.multinomial(v - n, weights)
        t = (int(session.open.timestamp()) * NS + np.arange(m, dtype=np.int64) * MINUTE_NS).astype(
            np.int64
        )
        mvw = np.round((mo + mh + ml + 2 * mc) / 5.0, 4)
        path_obj = DayPath(t, mo, mh, ml, mc, mv.astype(np.int64), mn.astype(np.int64), mvw)
        self._remember(self._paths, cache_key, path_obj)
        return path_obj

    def day_trades(self, symbol: str, day: date) -> DayTrades:
        """Trades of one trading day (cached); per minute they reproduce the minute bar's OHLCV."""
        cache_key = (symbol, day)
        cached = self._trades_cache.get(cache_key)
        if cached is not None:
            return cached
        path = self.day_path(symbol, day)
        rng = np.random.default_rng(stable_hash(self.seed, "trades", symbol, day.toordinal()))
        t, p, s, minute = self._trades(
            rng, path.t, path.o, path.h, path.low, path.c, path.v, path.n
        )
        first_id = (
            stable_hash(self.seed, "tid", symbol) % 10_000
        ) * 10**9 + day.toordinal() * 10**5
        trades = DayTrades(t, p, s, minute, first_id)
        self._remember(self._trades_cache, cache_key, trades)
        return trades

    @staticmethod
    def _trades(
        rng: np.random.Generator, t: I64, o: F64, h: F64, low: F64, c: F64, v: I64, n: I64
    ) -> tuple[I64, F64, I64, I64]:
        """Trades whose per-minute OHLCV equal the minute bars exactly."""
        total = int(n.sum())
        minute = np.repeat(np.arange(len(n)), n).astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))
        pos = np.arange(total) - starts[minute]  # position inside its minute
        last = pos == n[minute] - 1
        lo_m, hi_m = low[minute], h[minute]
        price = tick_round(lo_m + rng.random(total) * (hi_m - lo_m))
        price = np.where(pos == 1, hi_m, price)
        price = np.where(pos == 2, lo_m, price)
        price = np.where(pos == 0, o[minute], price)
        price = np.where(last, c[minute], price)
        offsets = rng.integers(1, MINUTE_NS - 1, total)
        # Sort offsets within each minute: add the minute index as a major key.
        order = np.lexsort((offsets, minute))
        ts = t[minute] + offsets[order]
        extra = v - n
        size = np.ones(total, dtype=np.int64)
        # Share each minute's extra volume among its trades with one multinomial per minute.
        cuts = rng.random(total)
        share = cuts / np.bincount(minute, weights=cuts)[minute]
        alloc = np.floor(share * extra[minute]).astype(np.int64)
        size += alloc
        leftover = extra - np.bincount(minute, weights=alloc, minlength=len(n)).astype(np.int64)
        size[np.cumsum(n) - 1] += leftover
        return ts.astype(np.int64), price, size, minute

    def _remember(self, cache: OrderedDict, key: object, value: object) -> None:  # type: ignore[type-arg]
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    # ---- views used by the REST layer -------------------------------------------------------

    def minutes_until(self, symbol: str, day: date, now: datetime) -> int:
        """How many of the day's minute bars have completed by `now`."""
        session = self.calendar.session(day)
        if now >= session.close:
            return session.minutes
        if now <= session.open:
            return 0
        return int((now - session.open).total_seconds() // 60)

    def last_close(self, symbol: str, now: datetime) -> tuple[float, int]:
        """Close of the last completed session before `now` and its time (ns); cheap."""
        day = now.astimezone(NY).date()
        prev = self.calendar.previous_day(day)
        if self.calendar.is_trading_day(day) and now >= self.calendar.session(day).close:
            prev = day
        if prev is None:
            return self.base_price(symbol), int(now.timestamp()) * NS
        close_ns = int(self.calendar.session(prev).close.timestamp()) * NS - 1
        return self.daily_bar(symbol, prev)[3], close_ns

    def last_price(self, symbol: str, now: datetime) -> tuple[float, int]:
        """Last trade price at or before `now` and its time (ns); the walk's anchor for streams."""
        day = now.astimezone(NY).date()
        for _ in range(15):
            if self.calendar.is_trading_day(day) and not self.is_halted(symbol, day):
                path = self.day_path(symbol, day)
                done = self.minutes_until(symbol, day, now)
                if done > 0:
                    return float(path.c[done - 1]), int(path.t[done - 1] + MINUTE_NS - 1)
            day -= timedelta(days=1)
        return self.base_price(symbol), int(now.timestamp()) * NS
