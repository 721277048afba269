"""tier-gate settings (`TG_` environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class VaultSettings(BaseModel):
    """How to reach OpenBao (KV v2); never the secrets themselves."""

    addr: str = "http://127.0.0.1:18200"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: SecretStr | None = None
    role_id: str | None = None
    secret_id: SecretStr | None = None
    role: str | None = None
    mount: str = "secret"


class Settings(BaseSettings):
    """Every knob of tier-gate; built once in `__main__` (tests pass keyword arguments)."""

    model_config = SettingsConfigDict(env_prefix="TG_", env_nested_delimiter="__", extra="ignore")

    env: Literal["dev", "prod"] = "prod"
    nats_url: str = "nats://127.0.0.1:14222"
    nats_creds: Path | None = None
    """tier-gate's MD-account user (BILLING stream); else read from OpenBao."""
    nats_sys_creds: Path | None = None
    """tier-gate's system-account user (revocation pushes); else read from OpenBao."""
    database_url: str = "postgresql://127.0.0.1:15432/raxx"
    db_pool_max: int = 8
    db_pool_timeout: float = Field(default=2.0, gt=0)
    """Seconds to wait for a pooled connection before answering 503."""
    db_operation_timeout: float = Field(default=3.0, gt=0)
    """Client-side deadline of one database operation (a frozen server never answers)."""
    db_statement_timeout: float = Field(default=2.5, gt=0)
    """PostgreSQL `statement_timeout` for every session (lock waits included)."""
    db_connect_timeout: int = Field(default=2, ge=2)
    """libpq `connect_timeout` in whole seconds (libpq's minimum is 2)."""
    vault: VaultSettings = VaultSettings()
    http_host: str = "127.0.0.1"
    http_port: int = 8082
    dev_http_port: int | None = None
    """Dev only: serve the dev routes (`/dev/identity...`) on this port, and only there.

    A listener of its own, on `http_host`, that the cluster's ingress never reaches (see
    deploy/k8s/overlays/dev). Unset, the dev routes share the API port, which is allowed only
    when that listens on loopback (`make run`, tests): tier-gate refuses to start otherwise.
    """
    identity_jwks_url: str | None = None
    """http(s) URL or file path of the identity JWKS; in dev, unset means the dev identity key."""
    identity_issuer: str = "raxx-identity"
    identity_audience: str = "raxx"
    credential_ttl: int | None = None
    """Seconds; overrides the policy's `credential_ttl_seconds` for every tier."""
    entitlement_cache_seconds: float = 30.0
    revocation_repush_seconds: float = 30.0
    """Re-push the revocation set this often (survives a nats-server restart)."""
    billing_durable: str = "tier-gate"
    readiness_interval: float = Field(default=1.0, gt=0)
    """Seconds between background dependency probes (`/readyz` reads their cached result)."""
    log_level: str = "INFO"
