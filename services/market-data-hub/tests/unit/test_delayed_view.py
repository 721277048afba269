"""The delayed path holds on every HTTP endpoint: property test with an injected clock.

Each example picks a clock (any time of year, DST changes included), a delay and a timeframe,
and calls the real endpoint functions against an adversarial fake upstream: it returns the
current (partial) bar, bars past the requested `end`, quotes stamped after `end`, option
snapshots stamped now with greeks. The oracle is independent of the code under test: the fake
knows each bar's true interval (calendar arithmetic in New York time), and every RFC 3339 text
anywhere in the body is parsed and compared with the horizon.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_data_hub import api
from market_data_hub.auth import Caller
from market_data_hub.domain import FakeClock
from market_data_hub.domain.horizon import Timeframe, Unit, bar_end_ns, parse_timeframe
from market_data_hub.errors import NotFoundError
from market_data_hub.normalize import rfc3339_ns
from raxx_contracts import NanoDatetime, default_policy, dumps

NY = ZoneInfo("America/New_York")
NS = 1_000_000_000
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
TIMEFRAMES = (
    [f"{n}Min" for n in (1, 2, 5, 15, 30, 59)]
    + [f"{n}Hour" for n in (1, 2, 4, 23)]
    + ["1Day", "1Week"]
    + [f"{n}Month" for n in (1, 2, 3, 6, 12)]
)


def iso(ns: int) -> str:
    return rfc3339_ns(*divmod(ns, NS))


def ny_midnight_ns(d: date) -> int:
    return int(datetime.combine(d, time(), NY).timestamp()) * NS


def true_bars(tf: Timeframe, now_ns: int, utc_stamp: bool) -> list[tuple[int, int]]:
    """(stamp, true end) of the bars up to and including the one in progress at `now`."""
    out: list[tuple[int, int]] = []
    today = datetime.fromtimestamp(now_ns / NS, UTC).astimezone(NY).date()
    if tf.intraday:
        width = tf.amount * (60 if tf.unit is Unit.MINUTE else 3600) * NS
        for d in (today - timedelta(days=1), today):
            base = ny_midnight_ns(d)
            out += [(base + i * width, base + (i + 1) * width) for i in range(86_400 * NS // width)]
        return [(s, e) for s, e in out if s <= now_ns]
    periods: list[tuple[date, date]] = []
    if tf.unit is Unit.DAY:
        periods = [(today - timedelta(days=i), today - timedelta(days=i - 1)) for i in range(10)]
    elif tf.unit is Unit.WEEK:
        monday = today - timedelta(days=today.weekday())
        periods = [(monday - timedelta(weeks=i), monday - timedelta(weeks=i - 1)) for i in range(6)]
    else:
        first = (today.year * 12 + today.month - 1) // tf.amount * tf.amount
        for i in range(4):
            a, b = first - i * tf.amount, first - (i - 1) * tf.amount
            periods.append((date(a // 12, a % 12 + 1, 1), date(b // 12, b % 12 + 1, 1)))
    for a, b in periods:
        stamp = ny_midnight_ns(a)
        if utc_stamp:  # the same bar stamped at UTC midnight of its day (evening before in NY)
            stamp = int(datetime.combine(a, time(), UTC).timestamp()) * NS
        out.append((stamp, ny_midnight_ns(b)))
    return [(s, e) for s, e in out if s <= now_ns]


class FakeUpstream:
    """The `AlpacaRest` surface the endpoints use, answering as a careless upstream would."""

    def __init__(self, now_ns: int, tf: Timeframe | None, utc_stamp: bool, ticks: list[int]):
        self.now_ns = now_ns
        self.bars_true = true_bars(tf, now_ns, utc_stamp) if tf else []
        self.ticks = ticks

    def _bar(self, stamp: int) -> dict[str, Any]:
        return {"t": iso(stamp), "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "n": 1, "vw": 1.2}

    feed = SimpleNamespace(value="iex")

    def history_feed(self, end: datetime | None) -> str:
        return "sip"

    async def bars(
        self, symbols: Any, tf: Any, start: datetime, end: Any, limit: int, feed: str
    ) -> Any:
        # ignores `end` on purpose: the hub must not rely on the upstream honouring it
        lo = int(start.timestamp()) * NS
        rows = [self._bar(s) for s, _ in self.bars_true if s >= lo][-limit:]
        return {symbols[0]: rows}

    async def latest_quote(self, symbol: str) -> Any:
        return self._quote(self.now_ns)

    async def quote_before(self, symbol: str, end: datetime, start: datetime) -> Any:
        return (self._quote(self.ticks[0]) if self.ticks else None), "sip"

    def _quote(self, t: int) -> dict[str, Any]:
        return {"t": iso(t), "bp": 1.0, "bs": 1, "ap": 1.1, "as": 2, "bx": "V", "ax": "V"}

    async def chain_page(self, underlying: str, on: Any, token: str | None) -> Any:
        return await self.chain(underlying, on), None

    async def chain(self, underlying: str, on: Any) -> Any:
        snaps = {}
        for i, t in enumerate(self.ticks):
            minute = t - t % (60 * NS)
            day = ny_midnight_ns(datetime.fromtimestamp(t / NS, UTC).astimezone(NY).date())
            snaps[f"AAPL250117C{i:08d}"] = {
                "latestQuote": self._quote(t),
                "latestTrade": {"t": iso(self.ticks[-1 - i]), "p": 1.0, "s": 1, "x": "C"},
                "minuteBar": self._bar(minute),
                "dailyBar": self._bar(day),
                "prevDailyBar": self._bar(day - 86_400 * NS),
                "greeks": {"delta": 0.5},
                "impliedVolatility": 0.3,
                "unknownField": {"asOf": iso(self.now_ns)},
            }
        return snaps


class Gateway:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.client = upstream

    async def call(self, endpoint: str, key: Any, fn: Any, caller: str | None = None) -> Any:
        return await fn(self.upstream)

    async def call_pages(self, endpoint: str, key: Any, fn: Any, caller: str | None = None) -> Any:
        data, _ = await fn(self.upstream, None)
        return data


class Latest:
    def __init__(self, payload: bytes | None) -> None:
        self.payload = payload

    async def get(self, subject: str) -> bytes | None:
        return self.payload


def fake_hub(now_ns: int, delay_s: int, upstream: FakeUpstream, latest: bytes | None) -> Any:
    clock = FakeClock(now_ns)
    return SimpleNamespace(
        clock=clock,
        policy=default_policy(),
        delay_ns=delay_s * NS,
        latest=Latest(latest),
        rest=Gateway(upstream),
        settings=SimpleNamespace(feed="iex", http_max_bars=10_000, delay_seconds=delay_s),
    )


def times_in(body: Any) -> list[int]:
    """Every RFC 3339 text anywhere in `body` (keys and values), as epoch ns."""
    found: list[int] = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, str) and RFC3339.fullmatch(node):
            found.append(NanoDatetime.parse(node).epoch_ns())
    return found


nows = st.integers(
    int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()),
    int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()),
).map(lambda s: s * NS + 123_456_789)
delays = st.sampled_from([0, 1, 60, 900, 3600])
FREE = Caller("u1", "free")
PRO = Caller("u2", "pro")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=nows, delay=delays, tf_text=st.sampled_from(TIMEFRAMES), utc_stamp=st.booleans())
def test_delayed_bars_hold_only_bars_ended_by_the_horizon(
    now: int, delay: int, tf_text: str, utc_stamp: bool
) -> None:
    tf = parse_timeframe(tf_text)
    up = FakeUpstream(now, tf, utc_stamp, [])
    h = fake_hub(now, delay, up, None)
    horizon = now - delay * NS
    start = datetime.fromtimestamp(now / NS, UTC) - timedelta(days=2500)
    body = asyncio.run(api.bars("AAPL", FREE, h, timeframe=tf_text, start=start, limit=10_000))
    ends = dict(up.bars_true)
    got = [NanoDatetime.parse(b["timestamp"]).epoch_ns() for b in body["bars"]]
    for stamp in got:
        assert ends[stamp] <= horizon, (tf_text, iso(stamp), iso(ends[stamp]), iso(horizon))
    assert all(t <= horizon for t in times_in(body))
    if not utc_stamp:  # nothing ended by the horizon is dropped (bars stamped as Alpaca does)
        assert set(got) == {s for s, e in up.bars_true if e <= horizon}
    assert body["path"] == "delayed"
    # the conservative end of a bar is never before its true end, for either stamping
    for stamp, end in up.bars_true:
        assert bar_end_ns(stamp, tf) >= end


@settings(max_examples=150, deadline=None)
@given(
    now=nows,
    delay=delays,
    stream_age=st.one_of(st.none(), st.integers(-120 * NS, 3 * 3600 * NS)),
    rest_age=st.one_of(st.none(), st.integers(-120 * NS, 3 * 3600 * NS)),
)
def test_delayed_latest_quote_is_at_or_before_the_horizon(
    now: int, delay: int, stream_age: int | None, rest_age: int | None
) -> None:
    stream = None
    if stream_age is not None:  # a latest value written by a leader whose clock runs ahead
        stream = dumps({"symbol": "AAPL", "timestamp": iso(now - delay * NS - stream_age)})
    ticks = [] if rest_age is None else [now - delay * NS - rest_age]
    h = fake_hub(now, delay, FakeUpstream(now, None, False, ticks), stream)
    try:
        body = asyncio.run(api.latest_quote("AAPL", FREE, h))
    except NotFoundError:
        assert rest_age is None or rest_age < 0
        return
    assert body["path"] == "delayed"
    stamps = times_in(body)
    assert stamps
    assert all(t <= now - delay * NS for t in stamps)


@settings(max_examples=200, deadline=None)
@given(
    now=nows,
    delay=delays,
    ages=st.lists(st.integers(0, 2 * 86_400 * NS), min_size=1, max_size=8),
    who=st.sampled_from([FREE, PRO]),
)
def test_delayed_option_chain_holds_nothing_younger_and_no_greeks(
    now: int, delay: int, ages: list[int], who: Caller
) -> None:
    horizon = now - delay * NS
    ticks = [now - a for a in ages]
    h = fake_hub(now, delay, FakeUpstream(now, None, False, ticks), None)
    body = asyncio.run(api.chain("AAPL", who, h))
    assert body["path"] == "delayed"  # options are delayed for free and pro
    assert all(t <= horizon for t in times_in(body))
    assert len(body["contracts"]) == len(ticks)  # the contract list stays complete
    for i, (sym, snap) in enumerate(sorted(body["contracts"].items())):
        assert not {"greeks", "impliedVolatility", "unknownField"} & set(snap), sym
        if ticks[i] <= horizon:  # a quote already old enough is exactly the delayed view
            assert snap["latestQuote"]["t"] == iso(ticks[i])


def test_realtime_tier_gets_the_live_chain_unchanged() -> None:
    now = int(datetime(2026, 3, 9, 15, tzinfo=UTC).timestamp()) * NS
    h = fake_hub(now, 900, FakeUpstream(now, None, False, [now]), None)
    body = asyncio.run(api.chain("AAPL", Caller("u3", "pro_plus"), h))
    assert body["path"] == "rt"
    assert "greeks" in next(iter(body["contracts"].values()))


@pytest.mark.parametrize(
    ("stamp", "tf", "end"),
    [
        # Alpaca stamps daily bars at New York midnight: today's bar ends at the next one
        ("2026-03-09T04:00:00Z", "1Day", "2026-03-10T04:00:00Z"),
        ("2026-03-07T05:00:00Z", "1Day", "2026-03-08T05:00:00Z"),  # EST -> EDT night
        ("2026-03-09T00:00:00Z", "1Day", "2026-03-10T04:00:00Z"),  # UTC-stamped: late side
        ("2026-03-09T04:00:00Z", "1Week", "2026-03-16T04:00:00Z"),
        ("2026-03-10T04:00:00Z", "1Week", "2026-03-16T04:00:00Z"),  # first day a Tuesday
        ("2026-01-02T05:00:00Z", "1Month", "2026-02-01T05:00:00Z"),
        ("2026-01-02T05:00:00Z", "3Month", "2026-04-01T04:00:00Z"),
        ("2026-11-02T05:00:00Z", "2Month", "2027-01-01T05:00:00Z"),
        ("2026-03-09T14:30:00Z", "1Hour", "2026-03-09T15:30:00Z"),
        ("2026-03-09T14:30:00Z", "15Min", "2026-03-09T14:45:00Z"),
    ],
)
def test_bar_end(stamp: str, tf: str, end: str) -> None:
    got = bar_end_ns(NanoDatetime.parse(stamp).epoch_ns(), parse_timeframe(tf))
    assert got == NanoDatetime.parse(end).epoch_ns()


@pytest.mark.parametrize("text", ["0Min", "60Min", "24Hour", "2Day", "4Month", "1Parsec", "1"])
def test_bad_timeframes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"bars|timeframe"):
        parse_timeframe(text)
