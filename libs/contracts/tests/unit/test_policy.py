from __future__ import annotations

import pytest
from raxx_contracts import (
    AssetClass,
    ContractError,
    Path,
    UnknownTierError,
    default_policy,
    parse_policy,
    subjects,
)


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
        "credential_ttl_seconds = 1\n[tiers.a.interest]\nmax_symbols_per_user = 1\n"
        "max_consumers_per_user = 1\nuser_cap_share = 1.0\ntier_cap_share = 1.0\n"
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
            "credential_ttl_seconds = 1\n[tiers.a.interest]\nmax_symbols_per_user = 1\n"
            "max_consumers_per_user = 1\nuser_cap_share = 1.0\ntier_cap_share = 1.0\n"
        )


def test_interest_quota_limits_follow_the_cap() -> None:
    free = default_policy().rule("free").interest
    assert free.user_limit(30) == 6  # min(10, 0.2 x 30)
    assert free.tier_limit(30) == 15
    assert free.user_limit(200) == 10
    assert free.user_limit(1) == 1


def test_interest_subject_names_tier_and_user_and_parses_back() -> None:
    token = subjects.user_token("alice")
    subject = subjects.interest("free", token)
    assert subject == f"md.ctl.interest.free.{token}"
    assert subjects.parse_interest(subject) == ("free", token)
    for bad in ("md.ctl.interest", "md.ctl.interest.free", f"md.ctl.interest.*.{token}",
                "md.ctl.interest.free.>", f"md.rt.interest.free.{token}"):  # fmt: skip
        with pytest.raises(ContractError):
            subjects.parse_interest(bad)
    with pytest.raises(ContractError):
        subjects.interest("free", "*")
    inbox = subjects.user_inbox_prefix("alice")
    assert subjects.is_user_reply(f"{inbox}.abc.1", token)
    for reply in (inbox, f"{inbox}.", "$KV.MDH_LEADER.upstream", f"{inbox}x.1",
                  subjects.user_inbox_prefix("bob") + ".1", f"{inbox}.a b"):  # fmt: skip
        assert not subjects.is_user_reply(reply, token)
