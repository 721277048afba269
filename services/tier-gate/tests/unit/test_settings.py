"""tier-gate's settings on the kit base: env names kept, prod by default, placeholders refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tier_gate.settings import Settings


def test_defaults_fail_safe_to_prod_and_point_at_make_runs_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAXX_PORT_OFFSET", raising=False)
    s = Settings()
    assert s.env == "prod"  # dev would mint identities: never the default
    assert s.http_port == 8082
    assert s.nats_url == "nats://127.0.0.1:14222"
    assert s.database_url.endswith("127.0.0.1:15432/tier_gate")


def test_devstack_env_names_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "TG_ENV": "dev",
        "TG_NATS_URL": "nats://127.0.0.1:1",
        "TG_NATS_CREDS": "run/tg.creds",
        "TG_NATS_SYS_CREDS": "run/tg-sys.creds",
        "TG_DATABASE_URL": "postgresql://x/y",
        "TG_VAULT__ADDR": "http://127.0.0.1:2",
        "TG_VAULT__TOKEN": "dev-root",
        "TG_HTTP_HOST": "127.0.0.1",
        "TG_HTTP_PORT": "9999",
        "TG_DEV_HTTP_PORT": "9998",
        "TG_BILLING_DURABLE": "d1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.env, s.http_port, s.dev_http_port, s.billing_durable) == ("dev", 9999, 9998, "d1")
    assert str(s.nats_creds) == "run/tg.creds"
    assert str(s.nats_sys_creds) == "run/tg-sys.creds"
    assert s.vault.addr == "http://127.0.0.1:2"
    assert s.vault.token is not None
    assert s.vault.token.get_secret_value() == "dev-root"


def test_placeholder_secrets_are_refused_in_prod() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="prod", vault={"token": "dev-root"})
    assert Settings(env="dev", vault={"token": "dev-root"}).env == "dev"
