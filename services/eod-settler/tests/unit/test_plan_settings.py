"""ALPACA_PLAN -> the settler's option quotes feed and REST rate; explicit settings win; the
stock settle reads SIP on every plan."""

from __future__ import annotations

import pytest
from eod_settler.settings import Settings


def test_plan_defaults() -> None:
    basic = Settings()
    assert (basic.alpaca_plan, basic.alpaca_feed, basic.alpaca_options_feed) == (
        "basic", "sip", "indicative",
    )  # fmt: skip
    assert basic.rest_rate_per_min == 200
    atp = Settings(alpaca_plan="algo_trader_plus")
    assert (atp.alpaca_feed, atp.alpaca_options_feed, atp.rest_rate_per_min) == (
        "sip", "opra", 10_000,
    )  # fmt: skip


def test_explicit_settings_override_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_PLAN", "algo_trader_plus")
    monkeypatch.setenv("EOD_REST_RATE_PER_MIN", "300")
    monkeypatch.setenv("EOD_ALPACA_FEED", "iex")
    s = Settings()
    assert (s.alpaca_plan, s.alpaca_feed, s.rest_rate_per_min) == ("algo_trader_plus", "iex", 300)
    assert s.alpaca_options_feed == "opra"
    monkeypatch.setenv("EOD_ALPACA_PLAN", "basic")  # the prefixed form wins
    assert Settings().alpaca_plan == "basic"
    assert Settings().alpaca_feed == "iex"  # the stock settle's feed is never the plan's
    monkeypatch.setenv("EOD_ALPACA_OPTIONS_FEED", "opra")
    assert Settings().alpaca_options_feed == "opra"  # explicit, on Basic


def test_unknown_plan_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_PLAN", "gold")
    with pytest.raises(ValueError, match=r"alpaca_plan|ALPACA_PLAN"):
        Settings()
