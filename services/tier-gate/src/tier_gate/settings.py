"""tier-gate settings (`TG_` environment variables) on the service kit's base.

From the kit (`ServiceSettings`): `TG_ENV`, `TG_LOG_LEVEL`, `TG_HTTP_HOST`, `TG_HTTP_PORT`,
`TG_NATS_URL`, `TG_NATS_CREDS`, `TG_NATS_CREDS_TEXT`, `TG_VAULT__*`, and the refusal of
placeholder secrets with `TG_ENV=prod`. tier-gate's own knobs follow.

`env` defaults to **prod** here (the kit's base defaults to dev): `dev` switches on the dev
identity issuer (`/dev/identity` mints identity tokens for any user and tier), so a deployment
that forgets `TG_ENV` must fail safe. `make run` (tools/devstack) sets `TG_ENV=dev`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from raxx_service_kit.settings import ServiceSettings, dev_database_url, dev_port, service_config
from raxx_service_kit.vault import VaultSettings

__all__ = ["Settings", "VaultSettings"]


class Settings(ServiceSettings):
    """Every knob of tier-gate; built once in `__main__` (tests pass keyword arguments)."""

    model_config = service_config("TG_")

    env: Literal["dev", "test", "prod"] = "prod"
    http_port: int = Field(default_factory=lambda: dev_port("tier-gate"))
    nats_sys_creds: Path | None = None
    """tier-gate's system-account user (revocation pushes); else read from OpenBao.

    `TG_NATS_CREDS` (kit) is its MD-account user (BILLING stream); else read from OpenBao."""
    database_url: str = Field(default_factory=lambda: dev_database_url("tier_gate"))
    db_pool_max: int = 8
    db_pool_timeout: float = Field(default=2.0, gt=0)
    """Seconds to wait for a pooled connection before answering 503."""
    db_operation_timeout: float = Field(default=3.0, gt=0)
    """Client-side deadline of one database operation (a frozen server never answers)."""
    db_statement_timeout: float = Field(default=2.5, gt=0)
    """PostgreSQL `statement_timeout` for every session (lock waits included)."""
    db_connect_timeout: int = Field(default=2, ge=2)
    """libpq `connect_timeout` in whole seconds (libpq's minimum is 2)."""
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
