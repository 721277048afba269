"""The delayed view of REST data: nothing younger than the horizon (now minus the delay).

Pure functions over Alpaca's raw REST shapes (`t` = RFC 3339 text), used by the HTTP API for a
tier without real-time for an asset class. The horizon is computed once per request from the
injected clock. A bar is visible only when its whole interval has ended by the horizon (the
current day's, hour's or minute's bar carries prices up to now); a quote or trade only when its
own time is at or before the horizon; anything without a time of its own (greeks, implied
volatility: computed from the live underlying) is withheld.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from raxx_contracts import NanoDatetime

NY = ZoneInfo("America/New_York")
NS = 1_000_000_000
_TIMEFRAME = re.compile(r"(\d{1,2})(Min|T|Hour|H|Day|D|Week|W|Month|M)")
_ALIASES = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}


class Unit(StrEnum):
    """Bar size units, spelled as Alpaca spells them."""

    MINUTE = "Min"
    HOUR = "Hour"
    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"


_AMOUNTS: dict[Unit, frozenset[int]] = {
    Unit.MINUTE: frozenset(range(1, 60)),
    Unit.HOUR: frozenset(range(1, 24)),
    Unit.DAY: frozenset({1}),
    Unit.WEEK: frozenset({1}),
    Unit.MONTH: frozenset({1, 2, 3, 6, 12}),
}


@dataclass(frozen=True)
class Timeframe:
    """A bar size Alpaca serves: 1-59 Min, 1-23 Hour, 1 Day, 1 Week, 1/2/3/6/12 Month."""

    amount: int
    unit: Unit

    @property
    def intraday(self) -> bool:
        """Minute or hour bars."""
        return self.unit in (Unit.MINUTE, Unit.HOUR)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def parse_timeframe(text: str) -> Timeframe:
    """`1Min`, `15T`, `1Hour`, `1Day`, `1Week`, `3Month` -> Timeframe; ValueError otherwise."""
    m = _TIMEFRAME.fullmatch(text)
    if m is None:
        raise ValueError("timeframe must look like 1Min, 15Min, 1Hour, 1Day, 1Week or 1Month")
    unit = Unit(_ALIASES.get(m.group(2), m.group(2)))
    amount = int(m.group(1))
    if amount not in _AMOUNTS[unit]:
        allowed = sorted(_AMOUNTS[unit])
        raise ValueError(f"{unit} bars come in amounts {allowed[0]}-{allowed[-1]}"
                         if unit.value in ("Min", "Hour") else
                         f"{unit} bars come in amounts {', '.join(map(str, allowed))}")  # fmt: skip
    return Timeframe(amount, unit)


def to_ns(value: Any) -> int | None:
    """Epoch ns of an RFC 3339 text, an aware datetime or epoch ns; None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return NanoDatetime.from_datetime(value).epoch_ns()
    if isinstance(value, str):
        try:
            return NanoDatetime.parse(value).epoch_ns()
        except ValueError:
            return None
    return None


def _ny_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), NY)


def _ny_day(start_ns: int) -> date:
    """The New York day a period stamped `start_ns` belongs to: the first New York midnight at
    or after the stamp (Alpaca stamps daily bars at New York midnight; a bar stamped at UTC
    midnight, i.e. the evening before in New York, is taken to cover the next New York day, so
    either convention errs on the late side)."""
    local = datetime.fromtimestamp(start_ns / NS, UTC).astimezone(NY)
    midnight = _ny_midnight(local.date())
    exact = int(midnight.timestamp()) * NS == start_ns
    return local.date() if exact else local.date() + timedelta(days=1)


def bar_end_ns(start_ns: int, tf: Timeframe) -> int:
    """When the bar stamped `start_ns` ends (exclusive): no trade after it is in the bar."""
    if tf.unit is Unit.MINUTE:
        return start_ns + tf.amount * 60 * NS
    if tf.unit is Unit.HOUR:
        return start_ns + tf.amount * 3600 * NS
    day = _ny_day(start_ns)
    if tf.unit is Unit.DAY:
        end = day + timedelta(days=tf.amount)
    elif tf.unit is Unit.WEEK:
        end = day - timedelta(days=day.weekday()) + timedelta(weeks=tf.amount)
    else:
        months = day.year * 12 + day.month - 1 + tf.amount
        end = date(months // 12, months % 12 + 1, 1)
    return int(_ny_midnight(end).timestamp()) * NS


def bar_visible(bar: Mapping[str, Any], tf: Timeframe, horizon_ns: int) -> bool:
    """Whether the whole interval of `bar` (raw, `t` = its start) has ended by the horizon."""
    start = to_ns(bar.get("t"))
    return start is not None and bar_end_ns(start, tf) <= horizon_ns


def visible_bars(
    bars: Iterable[Mapping[str, Any]], tf: Timeframe, horizon_ns: int
) -> list[Mapping[str, Any]]:
    """The bars whose interval ended by the horizon, in their order; the rest are dropped."""
    return [b for b in bars if bar_visible(b, tf, horizon_ns)]


def tick_visible(tick: Mapping[str, Any] | None, horizon_ns: int) -> bool:
    """A quote or trade (raw, `t` = its time) at or before the horizon."""
    if not tick:
        return False
    t = to_ns(tick.get("t"))
    return t is not None and t <= horizon_ns


SNAPSHOT_TICKS = ("latestQuote", "latestTrade")
SNAPSHOT_BARS: dict[str, Timeframe] = {
    "minuteBar": Timeframe(1, Unit.MINUTE),
    "dailyBar": Timeframe(1, Unit.DAY),
    "prevDailyBar": Timeframe(1, Unit.DAY),
}


def delayed_snapshot(snap: Mapping[str, Any], horizon_ns: int) -> dict[str, Any]:
    """One option contract's snapshot as the delayed path may show it.

    A latest quote or trade stamped at or before the horizon is exactly the delayed view (no
    newer one exists up to now); a younger one is withheld (the value as of the horizon is not
    in a snapshot). Bars are kept when their interval ended by the horizon. Everything else
    (greeks, impliedVolatility, fields added later) is withheld: an allow-list, not a deny-list.
    """
    out: dict[str, Any] = {}
    for key in SNAPSHOT_TICKS:
        tick = snap.get(key)
        if isinstance(tick, Mapping) and tick_visible(tick, horizon_ns):
            out[key] = dict(tick)
    for key, tf in SNAPSHOT_BARS.items():
        bar = snap.get(key)
        if isinstance(bar, Mapping) and bar_visible(bar, tf, horizon_ns):
            out[key] = dict(bar)
    return out


def delayed_chain(snapshots: Mapping[str, Any], horizon_ns: int) -> dict[str, dict[str, Any]]:
    """Every contract of the chain (the contract list is reference data), each snapshot cut to
    what is at or before the horizon."""
    return {
        sym: delayed_snapshot(snap if isinstance(snap, Mapping) else {}, horizon_ns)
        for sym, snap in snapshots.items()
    }


TIME_KEYS = frozenset({"t", "timestamp", "as_of"})


def youngest_ns(body: Any) -> int | None:
    """The latest time under any time key (`t`, `timestamp`, `as_of`) anywhere in `body`."""
    best: int | None = None
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in TIME_KEYS and (ns := to_ns(value)) is not None:
                    best = ns if best is None else max(best, ns)
                elif isinstance(value, Mapping | list | tuple):
                    stack.append(value)
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return best
