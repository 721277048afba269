"""The settings base every service subclasses (pydantic-settings, read from the environment).

A service writes

    class Settings(ServiceSettings):
        model_config = service_config("TG_")
        http_port: int = Field(default_factory=lambda: dev_port("tier-gate"))
        vault: TierGateVault = TierGateVault()     # a VaultSettings subclass

and keeps the env names `make run` writes: `<P>_ENV`, `<P>_LOG_LEVEL`, `<P>_HTTP_HOST`,
`<P>_HTTP_PORT`, `<P>_NATS_URL`, `<P>_NATS_CREDS` (a file path), `<P>_NATS_CREDS_TEXT`,
`<P>_VAULT__ADDR`, `<P>_VAULT__TOKEN`, ... (nested groups use `__`).

Dev defaults are `make run`'s ports (`DEV_PORTS`, shifted by `RAXX_PORT_OFFSET`), so
`python -m <service>` without an env file reaches the dev stack. With `env=prod` a placeholder
secret (empty, `change-me`, `dev-root`, ...) anywhere in the settings refuses to start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from raxx_service_kit.vault import VaultSettings

DEV_PORTS: dict[str, int] = {
    "nats": 14222,
    "postgres": 15432,
    "openbao": 18200,
    "alpaca-sim": 18700,
    "market-data-hub": 8081,
    "tier-gate": 8082,
    "broker-handoff": 8083,
    "eod-settler": 8084,
    "md-replay": 8085,
}
"""The ports of `make run` (tools/devstack) before `RAXX_PORT_OFFSET`."""

PLACEHOLDER_SECRETS = frozenset(
    {"", "change-me", "changeme", "change_me", "dev-root", "root", "dev", "secret", "password"}
)


def dev_port(name: str) -> int:
    """`make run`'s port for `name` (a `DEV_PORTS` key), shifted by `RAXX_PORT_OFFSET`."""
    return DEV_PORTS[name] + int(os.environ.get("RAXX_PORT_OFFSET", "0") or 0)


def dev_database_url(database: str) -> str:
    """The DSN `make run` gives a service's database (`tier_gate`, `eod_settler`, ...)."""
    return f"postgresql://postgres@127.0.0.1:{dev_port('postgres')}/{database}"


def service_config(env_prefix: str) -> SettingsConfigDict:
    """The model_config every service uses: its prefix, `__` for nested groups, extras ignored."""
    return SettingsConfigDict(env_prefix=env_prefix, env_nested_delimiter="__", extra="ignore")


def fill_unset(model: BaseModel, defaults: Mapping[str, object]) -> None:
    """Give each field named in `defaults` that value unless it was set explicitly (env, init);
    for derived defaults (`ALPACA_PLAN` → feed, REST rate) in an `after` validator.

    `model_fields_set` keeps naming only what was set explicitly, so a start-up log can say
    which derived values were overridden."""
    explicit = set(model.model_fields_set)
    for name, value in defaults.items():
        if name not in explicit:
            setattr(model, name, value)
    model.__pydantic_fields_set__ = explicit


def _placeholders(value: object, where: str) -> list[str]:
    if isinstance(value, SecretStr):
        return [where] if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS else []
    if isinstance(value, BaseModel):
        out: list[str] = []
        for name in type(value).model_fields:
            out += _placeholders(getattr(value, name), f"{where}__{name}" if where else name)
        return out
    return []


class ServiceSettings(BaseSettings):
    """What every service needs to start: env, logging, HTTP, NATS and OpenBao."""

    model_config = service_config("RAXX_")

    env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_url: str = Field(default_factory=lambda: f"nats://127.0.0.1:{dev_port('nats')}")
    nats_creds: Path | None = None
    """A `.creds` file (user JWT + seed); wins over `nats_creds_text`."""
    nats_creds_text: SecretStr | None = None
    """The `.creds` text itself (e.g. read from OpenBao by the deployment)."""
    vault: VaultSettings = Field(
        default_factory=lambda: VaultSettings(addr=f"http://127.0.0.1:{dev_port('openbao')}")
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> ServiceSettings:
        if self.env != "prod":
            return self
        bad = _placeholders(self, "")
        if bad:
            raise ValueError(
                "placeholder or empty secrets are refused with env=prod: " + ", ".join(bad)
            )
        return self
