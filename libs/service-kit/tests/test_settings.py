"""The settings base: prefixes, nested groups, make run's dev ports, prod placeholders refused."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr, ValidationError, model_validator
from raxx_service_kit.settings import (
    ServiceSettings,
    dev_database_url,
    dev_port,
    service_config,
)
from raxx_service_kit.vault import VaultSettings


class DemoVault(VaultSettings):
    path: str = "raxx/demo"


class DemoSettings(ServiceSettings):
    model_config = service_config("DEMO_")
    http_port: int = Field(default_factory=lambda: dev_port("tier-gate"))
    database_url: str = Field(default_factory=lambda: dev_database_url("demo"))
    vault: DemoVault = DemoVault()
    api_secret: SecretStr = SecretStr("change-me")


def test_dev_defaults_are_make_runs_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAXX_PORT_OFFSET", raising=False)
    s = DemoSettings()
    assert (s.env, s.http_port, s.nats_url) == ("dev", 8082, "nats://127.0.0.1:14222")
    assert s.database_url == "postgresql://postgres@127.0.0.1:15432/demo"
    assert ServiceSettings().vault.addr == "http://127.0.0.1:18200"
    monkeypatch.setenv("RAXX_PORT_OFFSET", "100")
    assert DemoSettings().http_port == 8182
    assert DemoSettings().nats_url == "nats://127.0.0.1:14322"


def test_env_names_devstack_writes_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "DEMO_NATS_URL": "nats://n:1",
        "DEMO_NATS_CREDS": "/run/demo.creds",
        "DEMO_HTTP_PORT": "9000",
        "DEMO_VAULT__ADDR": "http://bao:8200",
        "DEMO_VAULT__AUTH": "approle",
        "DEMO_VAULT__ROLE_ID": "r",
        "DEMO_VAULT__PATH": "raxx/other",
        "DEMO_LOG_LEVEL": "DEBUG",
    }.items():
        monkeypatch.setenv(k, v)
    s = DemoSettings()
    assert (s.nats_url, str(s.nats_creds), s.http_port) == ("nats://n:1", "/run/demo.creds", 9000)
    assert (s.vault.addr, s.vault.auth, s.vault.role_id) == ("http://bao:8200", "approle", "r")
    assert (s.vault.path, s.log_level) == ("raxx/other", "DEBUG")


def test_prod_refuses_placeholder_secrets_anywhere() -> None:
    with pytest.raises(ValidationError, match="api_secret"):
        DemoSettings(env="prod", vault=DemoVault(token=SecretStr("s.real")))
    with pytest.raises(ValidationError, match="vault__token"):
        DemoSettings(
            env="prod", api_secret=SecretStr("x9"), vault=DemoVault(token=SecretStr("dev-root"))
        )
    with pytest.raises(ValidationError, match="nats_creds_text"):
        DemoSettings(env="prod", api_secret=SecretStr("x9"), nats_creds_text=SecretStr(" "))
    ok = DemoSettings(
        env="prod", api_secret=SecretStr("x9"), vault=DemoVault(token=SecretStr("s.x"))
    )
    assert ok.env == "prod"
    assert DemoSettings(env="dev").api_secret.get_secret_value() == "change-me"


def test_fill_unset_keeps_explicit_values_and_fields_set() -> None:
    from raxx_service_kit.settings import fill_unset

    class Derived(ServiceSettings):
        model_config = service_config("DERIVED_")
        feed: str = "iex"
        rate: float = 200.0

        @model_validator(mode="after")
        def _derived(self) -> Derived:
            fill_unset(self, {"feed": "sip", "rate": 10_000.0})
            return self

    s = Derived(rate=5.0)
    assert (s.feed, s.rate) == ("sip", 5.0)
    assert "rate" in s.model_fields_set
    assert "feed" not in s.model_fields_set
