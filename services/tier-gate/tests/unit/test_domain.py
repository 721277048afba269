"""Pure tier-gate logic: templates from policy, claims, NATS JWT encoding."""

from __future__ import annotations

import json

import pytest
from raxx_contracts import default_policy, subjects
from raxx_service_kit.nats import creds_text
from tier_gate import domain, natsjwt

POLICY = default_policy()


def test_free_template_allows_only_delayed_paths_and_its_inbox() -> None:
    tpl = domain.tier_template(POLICY, "free")
    assert tpl["sub"]["allow"] == [
        "md.delayed.stocks.>",
        "md.delayed.options.>",
        "_INBOX_U.{{tag(inbox)}}.>",
    ]
    assert tpl["pub"]["allow"] == [
        "md.ctl.interest.free.{{tag(inbox)}}",
        "_INBOX_U.{{tag(inbox)}}.>",
        "$JS.API.DIRECT.GET.MD_DELAYED_STOCKS",
        "$JS.API.DIRECT.GET.MD_DELAYED_OPTIONS",
        "md.ctl.replay.free.{{tag(inbox)}}",
    ]
    assert tpl["subs"] == POLICY.rule("free").max_subscriptions


def test_pro_template_adds_realtime_equities_only() -> None:
    allow = domain.tier_template(POLICY, "pro")["sub"]["allow"]
    assert "md.rt.stocks.>" in allow
    assert "md.rt.options.>" not in allow


@pytest.mark.parametrize(
    ("tier", "streams"),
    [
        ("free", {"MD_DELAYED_STOCKS", "MD_DELAYED_OPTIONS"}),
        ("pro", {"MD_DELAYED_STOCKS", "MD_DELAYED_OPTIONS", "MD_RT_STOCKS"}),
        ("pro_plus", set(subjects.CAPTURE_STREAMS)),
    ],
)
def test_templates_allow_direct_gets_on_exactly_the_readable_streams(
    tier: str, streams: set[str]
) -> None:
    pub = domain.tier_template(POLICY, tier)["pub"]["allow"]
    direct = {p.removeprefix("$JS.API.DIRECT.GET.") for p in pub if p.startswith("$JS.API.")}
    assert direct == streams
    assert not any(p.startswith(subjects.CAPTURE_PREFIX) for p in pub)


def test_only_the_hub_publishes_capture_subjects_and_nobody_publishes_md_paths() -> None:
    for name, perms in domain.SERVICE_PERMISSIONS.items():
        capture = any(p.startswith("mdcap") or p == ">" for p in perms.pub)
        assert capture == (name == "hub"), name
        assert not any(p.startswith(("md.rt", "md.delayed")) for p in perms.pub), name
    hub = domain.SERVICE_PERMISSIONS["hub"].pub
    for stream in subjects.CAPTURE_STREAMS:
        assert f"$JS.API.STREAM.*.{stream}" in hub
    # the hub's credential must fit a CONNECT line (nats-server max_control_line: 4096)
    claims = domain.service_user_claims("hub", "U" * 56, domain.SERVICE_PERMISSIONS["hub"])
    assert len(json.dumps(claims)) * 4 // 3 + 600 < 4096


def test_no_template_lets_a_user_publish_market_data() -> None:
    for tier in POLICY.tier_order:
        pub = domain.tier_template(POLICY, tier)["pub"]["allow"]
        assert not any(p.startswith("md.rt") or p.startswith("md.delayed") for p in pub)


def test_user_claims_carry_no_permissions_and_the_inbox_tag() -> None:
    claims = domain.user_claims(user_id="alice", user_pub="UX", account_pub="AX", expires_at=9)
    nats = claims["nats"]
    assert "pub" not in nats
    assert "sub" not in nats
    assert nats["tags"] == [f"inbox:{subjects.user_token('alice')}"]
    assert claims["exp"] == 9


def test_granted_matches_the_template_for_that_user() -> None:
    g = domain.granted(POLICY, "pro_plus", "bob")
    assert g["paths"] == {"stocks": "rt", "options": "rt"}
    assert f"{subjects.user_inbox_prefix('bob')}.>" in g["subscribe"]
    assert g["interest"] == subjects.interest("pro_plus", subjects.user_token("bob"))
    assert g["publish"][:2] == [g["interest"], f"{subjects.user_inbox_prefix('bob')}.>"]
    assert g["streams"] == list(POLICY.readable_streams("pro_plus"))
    assert g["replay"] == subjects.replay("pro_plus", subjects.user_token("bob"))
    tpl = domain.tier_template(POLICY, "pro_plus")["pub"]["allow"]
    assert {subjects.direct_get(s) for s in g["streams"]} <= set(tpl)


def test_only_the_responders_may_publish_into_user_inboxes_and_only_the_settler_settles() -> None:
    responders = {domain.HUB_RESPONDER, "md-replay"}
    for name, perms in domain.SERVICE_PERMISSIONS.items():
        inbox = any(p.startswith(subjects.USER_INBOX_ROOT) for p in perms.pub)
        assert inbox == (name in responders), name
        settles = any(p in ("md.>", ">") or p.startswith("md.settle") for p in perms.pub)
        assert settles == (name == "settler"), name
        corpactions = any(p in ("md.>", ">") or p.startswith("md.corpactions") for p in perms.pub)
        assert corpactions == (name == "settler"), name
    # Users never read settles or corporate actions (MBT consumes them from JetStream).
    for tier in POLICY.tiers:
        allow = domain.tier_template(POLICY, tier)["sub"]["allow"]
        assert not any(p.startswith(("md.settle", "md.corpactions", "md.>")) for p in allow)
    responder = domain.SERVICE_PERMISSIONS[domain.HUB_RESPONDER]
    assert responder.pub == ("_INBOX_U.>",)
    assert responder.sub == ("md.ctl.interest.>",)
    # md-replay answers replay requests and reads the real-time capture; it may neither
    # publish market data nor change, purge or delete a capture stream.
    replay = domain.SERVICE_PERMISSIONS["md-replay"]
    assert replay.sub == ("md.ctl.replay.>", "_INBOX.>")
    assert not any(p.startswith(("md.", "mdcap.", "$JS.API.>")) for p in replay.pub)
    for stream in ("MD_RT_STOCKS", "MD_RT_OPTIONS"):
        assert not any(
            p.endswith(f".{stream}") and p.split(".")[3] in ("DELETE", "PURGE", "UPDATE", "*")
            for p in replay.pub
        )
    hub = domain.SERVICE_PERMISSIONS["hub"]
    assert "$JS.API.>" not in hub.pub
    assert not any(p.startswith("md.ctl") or p.startswith("_INBOX") for p in hub.pub)


def test_downgrade_revokes_credentials_of_higher_tiers() -> None:
    assert domain.is_downgrade(POLICY, "pro", "free")
    assert not domain.is_downgrade(POLICY, "free", "pro")
    assert domain.tiers_above(POLICY, "free") == ("pro", "pro_plus")
    assert domain.tiers_above(POLICY, "pro_plus") == ()


def test_account_claims_include_revocations_sorted() -> None:
    claims = domain.account_claims(
        "MD", "AMD", jetstream=True, scoped_keys={"free": "AF"}, policy=POLICY,
        revocations={"UB": 2, "UA": 1},
    )  # fmt: skip
    assert list(claims["nats"]["revocations"]) == ["UA", "UB"]
    assert claims["nats"]["limits"]["disk_storage"] > 0
    assert claims["nats"]["signing_keys"][0]["kind"] == "user_scope"


def test_nats_jwt_round_trip_and_tamper_detection() -> None:
    kp = natsjwt.keypair(natsjwt.new_seed("account"))
    token = natsjwt.encode({"sub": "UX", "nats": {"type": "user"}}, kp, iat=5)
    claims = natsjwt.decode(token)
    assert claims["iss"] == kp.public_key.decode()
    assert claims["iat"] == 5
    assert len(claims["jti"]) == 52
    head, _body, sig = token.split(".")
    other = natsjwt.encode({"sub": "UY"}, kp).split(".")[1]
    with pytest.raises(natsjwt.NatsJwtError):
        natsjwt.decode(f"{head}.{other}.{sig}x")
    with pytest.raises(natsjwt.NatsJwtError):
        natsjwt.decode(f"{head}.{other}.{sig}")


def test_creds_text_round_trips() -> None:
    seed = natsjwt.new_seed("user")
    assert natsjwt.parse_creds(creds_text("eyJabc", seed)) == ("eyJabc", seed)


def test_public_key_validation() -> None:
    pub = natsjwt.public_key(natsjwt.new_seed("user"))
    assert natsjwt.is_public_key(pub, "U")
    assert not natsjwt.is_public_key(pub, "A")
    assert not natsjwt.is_public_key(pub[:-1] + ("A" if pub[-1] != "A" else "B"), "U")
    assert not natsjwt.is_public_key("Unope", "U")
