"""md-replay's pure logic: sessions, dates, what a tier may see, frames, pacing, rate."""

from __future__ import annotations

import datetime as dt

import pytest
from md_replay import domain
from md_replay.errors import ReplayError
from raxx_contracts import AssetClass, Path, default_policy

NS = domain.NS
NOON = int(dt.datetime(2026, 3, 2, 12, tzinfo=domain.NY).timestamp()) * NS


def test_a_session_is_the_new_york_day_across_dst() -> None:
    start, end = domain.session_window(dt.date(2026, 3, 8))  # DST starts: a 23-hour day
    assert (end - start) // NS == 23 * 3600
    assert domain.session_date(start) == dt.date(2026, 3, 8)
    assert domain.session_date(end - 1) == dt.date(2026, 3, 8)
    assert domain.session_date(end) == dt.date(2026, 3, 9)


def test_dates_in_the_future_or_past_retention_are_refused() -> None:
    domain.check_date(dt.date(2026, 3, 2), NOON, 30)
    domain.check_date(dt.date(2026, 1, 31), NOON, 30)
    with pytest.raises(ReplayError) as exc:
        domain.check_date(dt.date(2026, 3, 3), NOON, 30)
    assert exc.value.code == "unknown_date"
    with pytest.raises(ReplayError) as exc:
        domain.check_date(dt.date(2026, 1, 30), NOON, 30)
    assert exc.value.code == "outside_retention"


def test_a_delayed_tier_never_sees_data_younger_than_the_delay() -> None:
    policy = default_policy()
    assert domain.visible_until(policy, "free", AssetClass.STOCKS, NOON, 900) == NOON - 900 * NS
    assert domain.visible_until(policy, "pro", AssetClass.STOCKS, NOON, 900) == NOON
    assert domain.visible_until(policy, "pro", AssetClass.OPTIONS, NOON, 900) == NOON - 900 * NS
    assert domain.visible_until(policy, "pro_plus", AssetClass.OPTIONS, NOON, 900) == NOON
    subject = "md.rt.stocks.quotes.AAPL"
    assert domain.deliver_subject(subject, Path.DELAYED) == "md.delayed.stocks.quotes.AAPL"
    assert domain.deliver_subject(subject, Path.RT) == subject


def _recs(n: int, step_ns: int = 1_000_000, size: int = 10) -> list[domain.Record]:
    return [("md.rt.stocks.quotes.A", i, i * step_ns, b"x" * size) for i in range(n)]


def test_frames_keep_order_and_respect_every_bound() -> None:
    recs = _recs(1000)
    by_count = list(domain.frames(recs, 300, 10**9, None))
    assert [len(f) for f in by_count] == [300, 300, 300, 100]
    assert [r for f in by_count for r in f] == recs
    by_bytes = list(domain.frames(recs, 10_000, 50 * 43, None))
    assert all(len(f) <= 50 for f in by_bytes)
    by_span = list(domain.frames(recs, 10_000, 10**9, 50_000_000))
    assert all(f[-1][2] - f[0][2] <= 50_000_000 for f in by_span)
    assert [r for f in by_span for r in f] == recs


def test_pacer_spreads_original_time_over_speed() -> None:
    p = domain.Pacer(speed=4.0, origin_ns=10 * NS, started=100.0)
    assert p.due(10 * NS) == 100.0
    assert p.due(14 * NS) == 101.0


def test_user_rate_is_a_sliding_minute_per_user() -> None:
    rate = domain.UserRate(2)
    assert rate.allow("a", 0.0)
    assert rate.allow("a", 1.0)
    assert not rate.allow("a", 2.0)
    assert rate.allow("b", 2.0)
    assert rate.allow("a", 60.5)


def test_settings_refuse_an_ack_cadence_wider_than_the_window() -> None:
    from md_replay.settings import Settings

    assert Settings(window=8, ack_every=8).window == 8
    with pytest.raises(ValueError, match="MDR_ACK_EVERY"):
        Settings(window=2, ack_every=8)
