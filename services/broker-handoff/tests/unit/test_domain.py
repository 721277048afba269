from decimal import Decimal

import pytest
from broker_handoff import domain
from broker_handoff.settings import Settings
from pydantic import ValidationError
from raxx_contracts import default_policy


def test_client_order_id_is_deterministic_per_user_and_key() -> None:
    a = domain.client_order_id("u1", "key-1")
    assert a == domain.client_order_id("u1", "key-1")
    assert a != domain.client_order_id("u2", "key-1")
    assert a != domain.client_order_id("u1", "key-2")
    assert a.startswith("raxx-")
    assert len(a) <= 128


def test_client_order_id_refuses_empty_or_huge_keys() -> None:
    with pytest.raises(ValueError, match="idempotency"):
        domain.client_order_id("u1", "")
    with pytest.raises(ValueError, match="idempotency"):
        domain.client_order_id("u1", "x" * 201)


def test_state_is_unguessable_and_stored_hashed() -> None:
    states = {domain.new_state() for _ in range(100)}
    assert len(states) == 100
    s = states.pop()
    assert domain.state_key(s) != s
    assert len(domain.state_key(s)) == 64


def test_access_token_never_shows_its_value() -> None:
    tok = domain.AccessToken("super-secret-value")
    assert "super-secret-value" not in repr(tok)
    assert "super-secret-value" not in str(tok)
    assert "super-secret-value" not in f"{tok!r} {tok}"
    assert tok.reveal() == "super-secret-value"


def test_eligibility_follows_the_policy_and_refuses_unknown_tiers() -> None:
    policy = default_policy()
    assert domain.eligible(policy, "pro_plus")
    assert not domain.eligible(policy, "pro")
    assert not domain.eligible(policy, "free")
    assert not domain.eligible(policy, "platinum")


def test_tier_versions_apply_only_forward() -> None:
    assert domain.should_apply(None, 0)
    assert domain.should_apply(3, 4)
    assert not domain.should_apply(4, 4)
    assert not domain.should_apply(5, 4)


def test_order_request_needs_exactly_one_size_and_a_price_for_limits() -> None:
    ok = domain.OrderRequest(symbol="AAPL", side="buy", qty=Decimal("1"))
    assert ok.type == "market"
    with pytest.raises(ValidationError):
        domain.OrderRequest(symbol="AAPL", side="buy")
    with pytest.raises(ValidationError):
        domain.OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), notional=Decimal(5))
    with pytest.raises(ValidationError):
        domain.OrderRequest(symbol="AAPL", side="buy", type="limit", qty=Decimal(1))
    with pytest.raises(ValidationError):
        domain.OrderRequest(symbol="AAPL", side="hold", qty=Decimal(1))  # type: ignore[arg-type]


def test_order_fingerprint_ignores_the_id_but_not_the_order() -> None:
    a = domain.OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="x")
    b = domain.OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="y")
    c = domain.OrderRequest(symbol="AAPL", side="buy", qty=Decimal(2))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    fields = domain.order_fields(c, "raxx-1")
    assert fields == {
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": "raxx-1",
        "qty": "2",
    }


def test_admin_token_check_is_by_hash() -> None:
    digest = domain.sha256_hex("admin-secret")
    assert domain.token_matches("admin-secret", digest)
    assert domain.token_matches("admin-secret", digest.upper())
    assert not domain.token_matches("admin-secre", digest)


def test_settings_refuse_a_redirect_uri_off_the_allow_list() -> None:
    with pytest.raises(ValidationError, match="ALLOWED_REDIRECT_URIS"):
        Settings(
            redirect_uri="http://evil.example/cb",
            allowed_redirect_uris=["http://127.0.0.1:8083/v1/broker/alpaca/callback"],
        )


def test_settings_refuse_dev_fallback_secrets_in_prod() -> None:
    with pytest.raises(ValidationError, match="dev fallback"):
        Settings(env="prod", oauth_client_secret="x")


def test_settings_read_nested_vault_and_list_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BH_VAULT__ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("BH_VAULT__AUTH", "approle")
    monkeypatch.setenv("BH_REDIRECT_URI", "http://a/cb")
    monkeypatch.setenv("BH_ALLOWED_REDIRECT_URIS", '["http://a/cb", "http://b/cb"]')
    s = Settings()
    assert s.vault.addr == "http://127.0.0.1:1"
    assert s.vault.auth == "approle"
    assert s.allowed_redirect_uris == ["http://a/cb", "http://b/cb"]
