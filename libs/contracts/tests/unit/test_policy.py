from __future__ import annotations

import pytest
from raxx_contracts import AssetClass, Path, UnknownTierError, default_policy, parse_policy


def test_default_policy_matches_the_published_tier_table() -> None:
    p = default_policy()
    assert p.delay_seconds == 900
    assert p.stream_path("free", AssetClass.STOCKS) is Path.DELAYED
    assert p.stream_path("free", AssetClass.OPTIONS) is Path.DELAYED
    assert p.stream_path("pro", AssetClass.STOCKS) is Path.RT
    assert p.stream_path("pro", AssetClass.OPTIONS) is Path.DELAYED
    assert p.stream_path("pro_plus", AssetClass.OPTIONS) is Path.RT
    assert p.http_path("free") is Path.DELAYED
    assert p.http_path("pro") is Path.RT
    assert [p.eligible_for_handoff(t) for t in ("free", "pro", "pro_plus")] == [False, False, True]
    assert p.rule("free").paper_history_retention_days == 90
    assert p.rule("pro").paper_history_retention_days == 1095
    assert p.rule("pro_plus").paper_history_retention_days is None
    assert p.rank("free") < p.rank("pro") < p.rank("pro_plus")
    rates = [p.http_rate_of(t).requests_per_minute for t in ("free", "pro", "pro_plus")]
    assert rates == sorted(rates)


def test_every_tier_needs_an_http_rate() -> None:
    head = (
        'schema_version = 1\ndefault_tier = "a"\ndelay_seconds = 1\ntier_order = ["a"]\n'
        '[tiers.a]\nequities = "delayed"\noptions = "delayed"\nhttp = "delayed"\n'
        "historical_option_chains = false\nbroker_handoff = false\nmax_subscriptions = 1\n"
        "credential_ttl_seconds = 1\n"
    )
    with pytest.raises(ValueError, match="http_rate"):
        parse_policy(head)
    ok = parse_policy(head + "[http_rate.a]\nrequests_per_minute = 5\nburst = 2\n")
    assert ok.http_rate_of("a").burst == 2
    with pytest.raises(UnknownTierError):
        ok.http_rate_of("b")


def test_free_allow_list_contains_no_real_time_subject() -> None:
    allow = default_policy().subscribe_allow("free")
    assert allow == ("md.delayed.stocks.>", "md.delayed.options.>")


def test_pro_may_not_see_real_time_options() -> None:
    allow = default_policy().subscribe_allow("pro")
    assert "md.rt.stocks.>" in allow
    assert not any(a.startswith("md.rt.options") or a in ("md.rt.>", ">") for a in allow)


def test_unknown_tier_is_a_typed_error() -> None:
    with pytest.raises(UnknownTierError):
        default_policy().rule("platinum")


def test_policy_document_is_validated() -> None:
    with pytest.raises(ValueError, match="tier_order"):
        parse_policy(
            'schema_version = 1\ndefault_tier = "a"\ndelay_seconds = 1\ntier_order = ["a", "b"]\n'
            '[tiers.a]\nequities = "delayed"\noptions = "delayed"\nhttp = "delayed"\n'
            "historical_option_chains = false\nbroker_handoff = false\nmax_subscriptions = 1\n"
            "credential_ttl_seconds = 1\n"
        )
