"""Settings of market-data-hub (environment prefix `MDH_`, nested groups with `__`)."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from raxx_contracts.alpaca_plan import AlpacaPlan, limits
from raxx_service_kit.settings import ServiceSettings, dev_port, fill_unset, service_config
from raxx_service_kit.vault import VaultSettings as KitVaultSettings

PLAN_FIELDS = ("feed", "options_feed", "symbol_cap", "option_symbol_cap", "rest_rate_per_min")
"""Settings whose default comes from `ALPACA_PLAN` (an explicit value always wins)."""


class VaultSettings(KitVaultSettings):
    """How to reach Vault/OpenBao (the kit's model) and where the hub's secrets are; the Alpaca
    key itself is read from there at start."""

    addr: str = Field(default_factory=lambda: f"http://127.0.0.1:{dev_port('openbao')}")
    path: str = "raxx/alpaca/market-data"
    service_clients_path: str = "raxx/market-data-hub/service-clients"
    """Map client id -> sha256 hex of its secret: who may use the `/alpaca` passthrough."""
    poll_seconds: float = Field(default=30.0, gt=0)
    """How often the secret's version is re-read; a new version triggers a reconnect."""


class Settings(ServiceSettings):
    """Everything the hub reads from its environment. Built only in `__main__` or by tests.

    The kit's base gives `MDH_ENV`, `MDH_LOG_LEVEL`, `MDH_HTTP_HOST`, `MDH_HTTP_PORT`,
    `MDH_NATS_URL`, `MDH_NATS_CREDS` (+ `_TEXT`) and `MDH_VAULT__*`, with `make run`'s ports.
    """

    model_config = service_config("MDH_")

    nats_creds: str | None = None  # type: ignore[assignment]  # a path, as devstack writes it
    """Data and state identity (`hub`): publishes `mdcap.>` (the capture streams republish it on
    md.rt/md.delayed), owns the capture streams and the hub's KV buckets."""
    nats_responder_creds: str | None = None
    """User-facing identity (`hub-responder`): receives interest requests, may publish only
    into user inboxes. A second connection; unset = the requests use the first connection
    (tests and unauthenticated servers; required in prod when `nats_creds` is set)."""
    vault: VaultSettings = Field(default_factory=VaultSettings)

    alpaca_plan: AlpacaPlan = Field(
        default=AlpacaPlan.BASIC,
        validation_alias=AliasChoices("MDH_ALPACA_PLAN", "ALPACA_PLAN", "alpaca_plan"),
    )
    """`ALPACA_PLAN` (shared with the settler; `MDH_ALPACA_PLAN` wins when both are set): the
    defaults of `feed`, `options_feed`, `symbol_cap`, `option_symbol_cap`, `rest_rate_per_min`
    (see `raxx_contracts.alpaca_plan`). The key's real entitlement is probed at start."""
    alpaca_data_url: str = "https://data.alpaca.markets"
    alpaca_stream_url: str = "wss://stream.data.alpaca.markets"
    alpaca_trading_url: str = "https://paper-api.alpaca.markets"
    """Trading API base for the passthrough's reference data (calendar, clock, contracts)."""
    feed: Literal["iex", "sip", "delayed_sip", "test"] = "iex"
    options_feed: Literal["indicative", "opra"] = "indicative"
    options_enabled: bool = True

    symbol_cap: int = Field(default=30, gt=0)
    option_symbol_cap: int = Field(default=200, gt=0)
    delay_seconds: float = Field(default=900, ge=0)
    capture_window_seconds: float = Field(default=86_400, gt=0)
    """How long the capture streams (`MD_RT_*`, `MD_DELAYED_*`, file storage) keep messages:
    the window in which a consumer can recover a gap or start from a time. Default: a day,
    i.e. the current session. At least `delay_seconds * 1.1 + 60` (the delay line reads the
    real-time streams `delay_seconds` late)."""
    capture_max_bytes: int | None = Field(default=None, gt=0)
    """Optional byte bound per capture stream (oldest messages discarded first)."""
    linger_seconds: float = Field(default=30, ge=0)
    max_lease_seconds: int = Field(default=3600, gt=0)
    lease_record_max_bytes: int = Field(default=256 * 1024, ge=4096)
    """No lease record (one user's, or an asset's slot table) is written larger than this;
    keep it under the server's max_payload (1 MiB by default)."""
    interest_requests_per_min: float = Field(default=60, gt=0)
    """Interest requests one user may send per minute (per replica; a lease lasts up to
    `max_lease_seconds`, so a well-behaved client renews far less often); past it the reply
    is the error `rate_limited`."""
    interest_burst: int = Field(default=10, ge=1)
    interest_max_in_flight: int = Field(default=8, ge=1)
    """Users' requests answered concurrently (each user's one at a time, in order), so a user
    whose requests wait for Alpaca's acknowledgement never delays anyone else's."""
    interest_user_in_flight: int = Field(default=4, ge=1)
    """Requests of one user waiting or being answered; more are refused `rate_limited`."""

    rest_rate_per_min: int = Field(default=200, gt=0)
    """Alpaca REST requests per minute this replica may make (the plan's budget / replicas)."""
    rest_reserved_share: float = Field(default=0.25, gt=0, lt=1)
    """Share of the REST budget only internal service clients (the `/alpaca` passthrough, the
    hub's backfill) may use; users' HTTP requests get the rest and never touch it."""
    rest_user_max_share: float = Field(default=0.5, gt=0, le=1)
    """Most of the users' pool one user's uncached requests may take (429 `upstream_quota`)."""
    passthrough_max_wait_seconds: float = Field(default=30.0, gt=0)
    """How long a passthrough request waits for the budget before a 429 with Retry-After."""
    http_max_bars: int = Field(default=1000, gt=0, le=10_000)
    """Largest `limit` the bars endpoint accepts (one upstream page)."""
    rest_cache_seconds: float = Field(default=1.0, ge=0)
    rest_max_retries: int = Field(default=3, ge=0)

    http_port: int = Field(default_factory=lambda: dev_port("market-data-hub"))
    tier_gate_jwks_url: str = "http://127.0.0.1:8082/.well-known/jwks.json"
    http_token_audience: str = "raxx-md-http"  # noqa: S105 - a claim value
    http_token_issuer: str = "raxx-tier-gate"  # noqa: S105 - a claim value

    replica_id: str = Field(default_factory=socket.gethostname)
    leader_ttl_seconds: float = Field(default=6.0, gt=1)
    """Leader lease TTL in NATS KV; a follower takes over at most this long (+1 s) after death."""

    watchdog_seconds: float = Field(default=30.0, gt=0)
    """Force a reconnect when an upstream socket with subscriptions is silent this long."""
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    task_give_up_after: int = Field(default=20, gt=0)
    """A background task that fails this many times in a row is given up (liveness fails)."""
    liveness_seconds: float = Field(default=30.0, gt=0)
    """`/healthz` fails when no election round finished for this long, or the event loop was
    blocked (supervisor heartbeat stale) for a third of it."""
    slot_busy_seconds: float = Field(default=90.0, ge=0)
    """Wait out a stale upstream slot this long after a 406 (Alpaca reaps dead sockets at 90 s)."""
    upstream_refusal_seconds: float = Field(default=300.0, gt=0)
    """A symbol Alpaca refused (405, 400) is not asked for again, and leases on it are refused
    (`upstream_refused`), for this long."""
    ack_wait_seconds: float = Field(default=5.0, ge=0)
    """How long an interest reply waits for Alpaca to acknowledge new symbols; what is still
    unacknowledged then is reported `pending`, never `accepted`."""
    backfill_max_seconds: float = Field(default=120.0, gt=0)
    """A gap's REST backfill follows every page within this time, then stops (counted partial)."""
    reader_queue_frames: int = Field(default=100_000, gt=0)
    """Frames buffered between the socket reader and the publisher before the oldest is dropped."""

    bucket_prefix: str = "MDH"
    """Prefix of the hub's JetStream stream and KV buckets (tests use a unique one)."""
    latest_flush_seconds: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _plan_defaults(self) -> Settings:
        row = limits(self.alpaca_plan)
        plan = {
            "feed": row.stock_feed, "options_feed": row.options_feed,
            "symbol_cap": row.stock_symbol_cap, "option_symbol_cap": row.option_quote_cap,
            "rest_rate_per_min": row.rest_rate_per_min,
        }  # fmt: skip
        # what was set explicitly stays knowable after the defaults were filled in
        fill_unset(self, {name: plan[name] for name in PLAN_FIELDS})
        return self

    def plan_overrides(self) -> dict[str, object]:
        """Plan-derived settings that were set explicitly (for the start-up log)."""
        return {n: getattr(self, n) for n in PLAN_FIELDS if n in self.model_fields_set}

    @model_validator(mode="after")
    def _capture_window(self) -> Settings:
        need = self.delay_seconds * 1.1 + 60
        if self.capture_window_seconds < need:
            raise ValueError(
                f"MDH_CAPTURE_WINDOW_SECONDS={self.capture_window_seconds:g} is shorter than the "
                f"delay line needs (MDH_DELAY_SECONDS * 1.1 + 60 = {need:g})"
            )
        return self

    @model_validator(mode="after")
    def _responder_identity(self) -> Settings:
        if self.env == "prod" and self.nats_creds and not self.nats_responder_creds:
            raise ValueError(
                "MDH_NATS_RESPONDER_CREDS is required in prod: user requests are answered "
                "only by the hub-responder identity"
            )
        return self
