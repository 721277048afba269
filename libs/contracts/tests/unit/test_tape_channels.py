"""The issue-11 channels are real subjects under every tier's existing subscribe rights."""

from __future__ import annotations

from raxx_contracts import CHANNELS_BY_ASSET, TRADE_COMPANIONS, AssetClass, Channel, subjects
from raxx_contracts.enums import Path
from raxx_contracts.policy import default_policy


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def test_tape_channels_exist_for_stocks_only() -> None:
    new = (Channel.CORRECTIONS, Channel.CANCELS, Channel.LULDS, Channel.IMBALANCES)
    assert set(new) <= set(CHANNELS_BY_ASSET[AssetClass.STOCKS])
    assert not set(new) & set(CHANNELS_BY_ASSET[AssetClass.OPTIONS])
    assert set(TRADE_COMPANIONS) == {Channel.CORRECTIONS, Channel.CANCELS}
    subj = subjects.rt(AssetClass.STOCKS, Channel.CORRECTIONS, "BRK.B")
    assert subj == "md.rt.stocks.corrections.BRK_2EB"
    assert subjects.parse_market(subjects.to_delayed(subj)).channel is Channel.CORRECTIONS


def test_each_tier_may_read_the_new_subjects_on_its_own_path() -> None:
    policy = default_policy()
    for tier in policy.tier_order:
        allow = policy.subscribe_allow(tier)
        path = policy.stream_path(tier, AssetClass.STOCKS)
        for ch in CHANNELS_BY_ASSET[AssetClass.STOCKS]:
            subj = subjects.market(path, AssetClass.STOCKS, ch, "AAPL")
            assert any(_matches(p, subj) for p in allow), (tier, subj)
            delayed = subjects.market(Path.DELAYED, AssetClass.STOCKS, ch, "AAPL")
            assert any(_matches(p, delayed) for p in allow), (tier, delayed)
        rt = subjects.rt(AssetClass.STOCKS, Channel.CANCELS, "AAPL")
        assert any(_matches(p, rt) for p in allow) == (path is Path.RT)
