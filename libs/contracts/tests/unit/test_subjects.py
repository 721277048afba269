from __future__ import annotations

import datetime as dt

import pytest
from raxx_contracts import AssetClass, Channel, ContractError, Path, subjects


def test_market_subject_parses_back() -> None:
    s = subjects.rt(AssetClass.OPTIONS, Channel.QUOTES, "AAPL240315C00172500")
    assert s == "md.rt.options.quotes.AAPL240315C00172500"
    parsed = subjects.parse_market(s)
    assert parsed == (Path.RT, AssetClass.OPTIONS, Channel.QUOTES, "AAPL240315C00172500")


def test_delayed_twin_keeps_the_tail() -> None:
    rt = subjects.rt(AssetClass.STOCKS, Channel.BARS, "BRK.B")
    assert subjects.to_delayed(rt) == "md.delayed.stocks.bars.BRK_2EB"


def test_options_have_no_bar_channel() -> None:
    with pytest.raises(ContractError):
        subjects.rt(AssetClass.OPTIONS, Channel.BARS, "AAPL240315C00172500")


def test_settle_subjects_and_dedup_ids() -> None:
    d = dt.date(2026, 11, 24)
    assert subjects.settle(AssetClass.STOCKS, d, "BRK.B") == "md.settle.stocks.2026-11-24.BRK_2EB"
    assert subjects.settle_done(d) == "md.settle.done.2026-11-24"
    assert subjects.settle_msg_id(d, "AAPL", 2) != subjects.settle_msg_id(d, "AAPL", 1)


def test_user_inbox_prefix_is_one_safe_token_per_user() -> None:
    a = subjects.user_inbox_prefix("alice@example.com")
    b = subjects.user_inbox_prefix("bob")
    assert a != b
    assert a.count(".") == 1
    assert not set(a.split(".", 1)[1]) & set(".*> ")


@pytest.mark.parametrize(
    "bad", ["md.rt.stocks.quotes", "md.xx.stocks.quotes.A", "x.rt.stocks.quotes.A"]
)
def test_foreign_subjects_are_refused(bad: str) -> None:
    with pytest.raises(ContractError):
        subjects.parse_market(bad)
