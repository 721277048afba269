"""Rows of the historical REST API (bars, trades, quotes) for one symbol and time range."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from alpaca_sim.calendar import NY
from alpaca_sim.market import MINUTE_NS, NS, Market
from alpaca_sim.protocol import rfc3339_ns

TIMEFRAME_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
UNITS = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
LIMITS = {"Min": 59, "Hour": 23, "Day": 1, "Week": 1, "Month": 12}


@dataclass(frozen=True)
class TimeFrame:
    """A bar size such as 5Min or 1Day."""

    amount: int
    unit: str  # Min, Hour, Day, Week, Month

    @classmethod
    def parse(cls, text: str) -> TimeFrame:
        """Parse Alpaca's timeframe syntax; ValueError when invalid."""
        m = TIMEFRAME_RE.match(text)
        if m is None:
            raise ValueError(f"invalid timeframe: {text}")
        amount, unit = int(m.group(1)), UNITS.get(m.group(2), m.group(2))
        if not 1 <= amount <= LIMITS[unit] or (
            unit == "Month" and amount not in (1, 2, 3, 4, 6, 12)
        ):
            raise ValueError(f"invalid timeframe: {text}")
        return cls(amount, unit)

    @property
    def intraday(self) -> bool:
        """Minute or hour bars."""
        return self.unit in ("Min", "Hour")

    @property
    def minutes(self) -> int:
        """Bucket length of an intraday timeframe."""
        return self.amount * (60 if self.unit == "Hour" else 1)


def iso_z(t_ns: int) -> str:
    """RFC 3339, seconds precision, for bar times."""
    return datetime.fromtimestamp(t_ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def midnight_ns(day: date) -> int:
    """Midnight New York time of `day` in ns (daily bars are stamped with it)."""
    return int(datetime.combine(day, datetime.min.time(), NY).timestamp()) * NS


def _days(market: Market, symbol: str, start: datetime, end: datetime, now: datetime) -> list[date]:
    first = start.astimezone(NY).date()
    last = min(end, now).astimezone(NY).date()
    days = market.calendar.days_between(first, last)
    return [d for d in days if not market.is_halted(symbol, d)]


def _bar(
    t_ns: int, o: float, h: float, low: float, c: float, v: int, n: int, vw: float
) -> dict[str, object]:
    return {"t": iso_z(t_ns), "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}


def _partial_day(market: Market, symbol: str, day: date, now: datetime) -> tuple[float, ...] | None:
    """Today's bar so far (or a completed day's bar)."""
    session = market.calendar.session(day)
    if now >= session.close:
        return market.late_closes.apply(symbol, day, market.daily_bar(symbol, day))
    done = market.minutes_until(symbol, day, now)
    if done == 0:
        return None
    p = market.day_path(symbol, day)
    v = int(p.v[:done].sum())
    vw = round(float((p.vw[:done] * p.v[:done]).sum()) / v, 4)
    return (
        float(p.o[0]),
        float(p.h[:done].max()),
        float(p.low[:done].min()),
        float(p.c[done - 1]),
        v,
        int(p.n[:done].sum()),
        vw,
    )


def daily_rows(
    market: Market, symbol: str, tf: TimeFrame, start: datetime, end: datetime, now: datetime
) -> list[tuple[int, dict[str, object]]]:
    """(t_ns, bar) for Day/Week/Month timeframes, ascending."""
    rows: list[tuple[int, tuple[float, ...]]] = []
    # Weeks and months aggregate whole periods, so they look back; a daily bar needs only its day.
    lookback = timedelta(0) if tf.unit == "Day" else timedelta(days=40)
    for day in _days(market, symbol, start - lookback, end, now):
        bar = _partial_day(market, symbol, day, now)
        if bar is not None:
            rows.append((midnight_ns(day), bar))
    if tf.unit != "Day":
        rows = _group(rows, tf)
    lo, hi = int(start.timestamp() * NS), int(end.timestamp() * NS)
    return [(t, _bar(t, *b)) for t, b in rows if lo <= t <= hi]  # type: ignore[arg-type]


def _group(
    rows: list[tuple[int, tuple[float, ...]]], tf: TimeFrame
) -> list[tuple[int, tuple[float, ...]]]:
    def key(t_ns: int) -> tuple[int, int]:
        d = datetime.fromtimestamp(t_ns / NS, NY).date()
        if tf.unit == "Week":
            iso = d.isocalendar()
            return iso.year, iso.week
        return d.year, (d.month - 1) // tf.amount

    out: list[tuple[int, tuple[float, ...]]] = []
    groups: dict[tuple[int, int], list[tuple[int, tuple[float, ...]]]] = {}
    for row in rows:
        groups.setdefault(key(row[0]), []).append(row)
    for members in groups.values():
        bars = [b for _, b in members]
        v = sum(int(b[4]) for b in bars)
        vw = round(sum(b[6] * b[4] for b in bars) / v, 4) if v else bars[-1][3]
        agg = (
            bars[0][0],
            max(b[1] for b in bars),
            min(b[2] for b in bars),
            bars[-1][3],
            v,
            sum(int(b[5]) for b in bars),
            vw,
        )
        out.append((members[0][0], agg))
    return out


def intraday_rows(
    market: Market,
    symbol: str,
    tf: TimeFrame,
    start: datetime,
    end: datetime,
    now: datetime,
    descending: bool = False,
) -> Iterator[tuple[int, dict[str, object]]]:
    """(t_ns, bar) for minute/hour timeframes, day by day so callers can stop early."""
    lo, hi = int(start.timestamp() * NS), int(end.timestamp() * NS)
    days = _days(market, symbol, start, end, now)
    for day in reversed(days) if descending else days:
        p = market.day_path(symbol, day)
        done = market.minutes_until(symbol, day, now)
        if done == 0:
            continue
        width = tf.minutes * MINUTE_NS
        base = midnight_ns(day)
        bucket = (p.t[:done] - base) // width
        edges = np.flatnonzero(np.diff(bucket)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [done]))
        rows = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            t = int(base + bucket[a] * width)
            if t < lo or t > hi:
                continue
            v = int(p.v[a:b].sum())
            vw = round(float((p.vw[a:b] * p.v[a:b]).sum()) / v, 4)
            rows.append(
                (
                    t,
                    _bar(
                        t,
                        float(p.o[a]),
                        float(p.h[a:b].max()),
                        float(p.low[a:b].min()),
                        float(p.c[b - 1]),
                        v,
                        int(p.n[a:b].sum()),
                        vw,
                    ),
                )
            )
        yield from reversed(rows) if descending else rows


def history_tape(symbol: str) -> str:
    """The SIP tape letter historical trades and quotes of `symbol` carry."""
    return "ABC"[sum(map(ord, symbol)) % 3]


@dataclass(frozen=True)
class PastEdit:
    """A print of a closed session that a correction or cancel reached."""

    trade_id: int
    price: float
    size: int
    t_ns: int
    tape: str


def edit_past_print(
    market: Market,
    symbol: str,
    day: date,
    trade_id: int | None,
    new: tuple[float, int] | None,
    now: datetime,
) -> PastEdit:
    """Correct (`new` = (price, size)) or bust (`new` None) one print of `symbol`'s closed
    session `day` (default: its last standing print), through `market.late_closes`.

    Editing the session's last standing print moves the REST daily bar's close and the closing
    auction print; editing any other print leaves both alone. ValueError when `day` is not a
    closed session with prints, or the id names no standing print of it.
    """
    if not market.calendar.is_trading_day(day) or market.is_halted(symbol, day):
        raise ValueError(f"{symbol} has no prints on {day}")
    if market.calendar.session(day).close > now:
        raise ValueError(f"the {day} session has not closed; correct the live tape instead")
    tr = market.day_trades(symbol, day)
    index = None if trade_id is None else trade_id - tr.first_id
    index, (price, size) = market.late_closes.edit_print(
        symbol, day, tr.p.tolist(), tr.s.tolist(), index, new
    )
    return PastEdit(tr.first_id + index, price, size, int(tr.t[index]), history_tape(symbol))


def tick_rows(
    market: Market,
    symbol: str,
    kind: str,
    start: datetime,
    end: datetime,
    now: datetime,
    descending: bool = False,
) -> Iterator[tuple[int, dict[str, object]]]:
    """(t_ns, trade or quote) in [start, end], day by day."""
    lo = int(start.timestamp() * NS)
    hi = min(int(end.timestamp() * NS), int(now.timestamp() * NS))
    tape = history_tape(symbol)
    days = _days(market, symbol, start, end, now)
    for day in reversed(days) if descending else days:
        tr = market.day_trades(symbol, day)
        t = tr.t if kind == "trades" else tr.t - 500
        sel = np.flatnonzero((t >= lo) & (t <= hi))
        if descending:
            sel = sel[::-1]
        for i in sel.tolist():
            t_ns, price = int(t[i]), float(tr.p[i])
            if kind == "trades":
                row: dict[str, object] = {
                    "t": rfc3339_ns(t_ns // NS, t_ns % NS),
                    "x": "V",
                    "p": price,
                    "s": int(tr.s[i]),
                    "c": ["@"],
                    "i": tr.first_id + i,
                    "z": tape,
                }
            else:
                half = max(0.01, round(price * 0.0002, 2))
                row = {
                    "t": rfc3339_ns(t_ns // NS, t_ns % NS),
                    "ax": "V",
                    "ap": round(price + half, 2),
                    "as": int(tr.s[i] % 7 + 1) * 100,
                    "bx": "V",
                    "bp": round(price - half, 2),
                    "bs": int(tr.s[i] % 5 + 1) * 100,
                    "c": ["R"],
                    "z": tape,
                }
            yield t_ns, row
