"""ALPACA_PLAN -> the hub's feeds, caps and REST rate; explicit settings win; history feed."""

from __future__ import annotations

import pytest
from market_data_hub.domain.ratelimit import retry_wait
from market_data_hub.settings import Settings
from raxx_contracts.alpaca_plan import history_feed


def test_plan_defaults() -> None:
    basic = Settings()
    assert basic.alpaca_plan == "basic"
    assert (basic.feed, basic.options_feed, basic.symbol_cap, basic.option_symbol_cap) == (
        "iex", "indicative", 30, 200,
    )  # fmt: skip
    assert basic.rest_rate_per_min == 200
    atp = Settings(alpaca_plan="algo_trader_plus")
    assert (atp.feed, atp.options_feed, atp.option_symbol_cap, atp.rest_rate_per_min) == (
        "sip", "opra", 1000, 10_000,
    )  # fmt: skip
    assert atp.symbol_cap >= 1000  # "unlimited": the hub's own ceiling
    assert atp.plan_overrides() == {}


def test_explicit_settings_override_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_PLAN", "algo_trader_plus")
    monkeypatch.setenv("MDH_FEED", "delayed_sip")
    monkeypatch.setenv("MDH_SYMBOL_CAP", "77")
    s = Settings()
    assert (s.alpaca_plan, s.feed, s.symbol_cap, s.options_feed) == (
        "algo_trader_plus", "delayed_sip", 77, "opra",
    )  # fmt: skip
    assert s.plan_overrides() == {"feed": "delayed_sip", "symbol_cap": 77}
    monkeypatch.setenv("MDH_ALPACA_PLAN", "basic")  # the prefixed form wins
    assert Settings().alpaca_plan == "basic"
    assert Settings(alpaca_plan="basic", rest_rate_per_min=50).rest_rate_per_min == 50


def test_unknown_plan_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_PLAN", "gold")
    with pytest.raises(ValueError, match=r"alpaca_plan|ALPACA_PLAN"):
        Settings()


def test_history_feed_is_sip_once_15_minutes_old_and_never_delayed_sip() -> None:
    now = 1_800_000_000.0
    assert history_feed(now - 16 * 60, now, realtime_sip=False) == "sip"
    assert history_feed(now - 15 * 60, now, realtime_sip=False) == "iex"  # inside the margin
    assert history_feed(now, now, realtime_sip=False) == "iex"
    assert history_feed(now, now, realtime_sip=True) == "sip"


def test_retry_wait_reads_x_ratelimit_reset_and_retry_after() -> None:
    now = 1_800_000_000.0
    assert retry_wait(None, str(int(now) + 7), now) == 7
    assert retry_wait("2", None, now) == 2
    assert retry_wait("2", str(int(now) + 5), now) == 5  # the later of the two
    assert retry_wait(None, str(int(now) - 5), now) == 0  # already past
    assert retry_wait(None, str(int(now) + 3600), now) == 60  # capped: skew, not a minute window
    assert retry_wait("soon", "never", now) is None
    assert retry_wait(None, None, now) is None
