"""Settings of broker-handoff (prefix `BH_`); how to reach things, never the secrets themselves."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from raxx_service_kit.settings import (
    ServiceSettings,
    dev_database_url,
    dev_port,
    service_config,
)
from raxx_service_kit.vault import VaultSettings

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8083/v1/broker/alpaca/callback"


class BrokerHandoffVault(VaultSettings):
    """The kit's OpenBao settings (`BH_VAULT__ADDR`, `BH_VAULT__AUTH`, ...) plus the prefix."""

    role: str | None = "broker-handoff"
    """Kubernetes auth role."""
    prefix: str = "raxx/broker-handoff"
    """Every path broker-handoff owns lives below this prefix (the policy grants exactly it)."""


class Settings(ServiceSettings):
    """broker-handoff settings; build once at process start and pass around.

    From the kit's base: `BH_ENV`, `BH_LOG_LEVEL`, `BH_HTTP_HOST`, `BH_HTTP_PORT`, `BH_NATS_URL`,
    `BH_NATS_CREDS` (a `.creds` file), `BH_NATS_CREDS_TEXT`.
    """

    model_config = service_config("BH_")

    http_port: int = Field(default_factory=lambda: dev_port("broker-handoff"))
    database_url: str = Field(default_factory=lambda: dev_database_url("broker_handoff"))
    vault: BrokerHandoffVault = Field(
        default_factory=lambda: BrokerHandoffVault(addr=f"http://127.0.0.1:{dev_port('openbao')}")
    )

    alpaca_oauth_url: str = "http://127.0.0.1:18700"
    """Base of the authorize page (`/oauth/authorize` is appended)."""
    alpaca_trading_url: str = "http://127.0.0.1:18700"
    """Base of the token/revoke endpoints and of the live trading API."""
    alpaca_paper_trading_url: str | None = None
    """Base of the paper trading API; defaults to `alpaca_trading_url` (the sim serves both)."""
    oauth_client_id: str = "sim-client"
    oauth_client_secret: SecretStr | None = None
    """Dev fallback only; the real secret lives in Vault (`<prefix>/oauth-client`)."""
    oauth_scope: str = "account:write trading"
    oauth_pkce: bool = True
    oauth_state_ttl_seconds: int = Field(default=600, gt=0)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    allowed_redirect_uris: list[str] = Field(default_factory=lambda: [DEFAULT_REDIRECT_URI])
    admin_token_sha256: str | None = None
    """Dev fallback; the hash normally lives in Vault (`<prefix>/admin`, field token_sha256)."""

    identity_jwks_url: str = "http://127.0.0.1:8082/dev/identity/jwks.json"
    identity_issuer: str = "raxx-identity"
    identity_audience: str = "raxx"
    identity_jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    """An unknown `kid` refetches the JWKS at most this often (a forged kid cannot hammer it)."""

    cookie_secure: bool = True
    """`Secure` on the flow-binding cookie. Chromium and Firefox accept Secure cookies from
    http://localhost and http://127.0.0.1, so this stays on in dev; turn it off only for clients
    that refuse them over plain http (e.g. Python's cookie jar in tests)."""
    connect_link_ttl_seconds: int = Field(default=300, gt=0)
    """Lifetime of a one-time browser link from `POST /v1/broker/alpaca/connect-link`."""
    app_return_url: str | None = None
    """When set, the callback ends with a 303 to this URL (`?broker=alpaca&status=...&reason=`)
    instead of its own page."""

    db_acquire_timeout_seconds: float = Field(default=2.0, gt=0)
    """Longest wait for a pooled connection; past it the request is a 503 with Retry-After."""
    db_connect_timeout_seconds: int = Field(default=3, ge=2)
    db_statement_timeout_ms: int = Field(default=5000, gt=0)
    db_reconnect_timeout_seconds: float = Field(default=2.0, gt=0)
    """How long the pool keeps retrying a failed connection in the background before it gives
    up and lets the next request try at once (keeps recovery after an outage fast)."""
    db_pool_max_size: int = Field(default=8, gt=0)
    retry_after_seconds: int = Field(default=5, gt=0)
    """`Retry-After` on 503 answers (database or Vault unavailable)."""

    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    """How often the reconciler looks for Vault grants without a live database record."""
    reconcile_grace_seconds: float = Field(default=120.0, gt=0)
    """A grant still being written is left alone this long before it counts as an orphan."""

    tier_consumer_durable: str = "broker-handoff-tiers"
    """The durable JetStream consumer on BILLING (tier-gate owns the stream)."""
    nats_start_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest wait for NATS (and the tier consumer's bind) at start-up."""
    alpaca_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _checked(self) -> Settings:
        if self.redirect_uri not in self.allowed_redirect_uris:
            raise ValueError("BH_REDIRECT_URI must be one of BH_ALLOWED_REDIRECT_URIS")
        if self.env != "dev" and self.oauth_client_secret is not None:
            raise ValueError("BH_OAUTH_CLIENT_SECRET is a dev fallback; in prod use Vault")
        if self.env != "dev" and self.admin_token_sha256 is not None:
            raise ValueError("BH_ADMIN_TOKEN_SHA256 is a dev fallback; in prod use Vault")
        return self

    def trading_url(self, env: Literal["live", "paper"]) -> str:
        """Trading API base for a connection's environment."""
        if env == "paper" and self.alpaca_paper_trading_url:
            return self.alpaca_paper_trading_url
        return self.alpaca_trading_url
