"""Settings of the settler: environment variables with the `EOD_` prefix."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode
from raxx_contracts.alpaca_plan import AlpacaPlan, limits
from raxx_service_kit.settings import (
    ServiceSettings,
    dev_database_url,
    dev_port,
    fill_unset,
    service_config,
)
from raxx_service_kit.vault import VaultSettings

CsvList = Annotated[list[str], NoDecode]
FaultPoint = Literal["", "after_write"]


class SettlerVault(VaultSettings):
    """The kit's OpenBao settings (`EOD_VAULT__ADDR`, `__TOKEN`, `__AUTH`, ...) plus where the
    REST credentials are: `path` (`EOD_VAULT__PATH`), the Alpaca market-data key (default,
    direct to Alpaca), or the settler's hub service client `raxx/eod-settler/hub-client` when
    the Alpaca URLs point at the hub's `/alpaca` passthrough. Same fields either way:
    `key_id`, `secret_key`.
    """

    path: str = "raxx/alpaca/market-data"


class Settings(ServiceSettings):
    """Every knob of eod-settler (`EOD_*`); tests build it with keyword arguments.

    From the kit: `EOD_ENV`, `EOD_LOG_LEVEL`, `EOD_HTTP_HOST`, `EOD_NATS_URL`, `EOD_NATS_CREDS`
    (`_TEXT`), `EOD_VAULT__*`, with `make run`'s ports as defaults (NATS 14222, PostgreSQL
    15432, OpenBao 18200, this API 8084; shifted by `RAXX_PORT_OFFSET`), so the service and its
    CLI reach the dev stack without an env file.
    """

    model_config = service_config("EOD_")

    http_port: int = Field(default_factory=lambda: dev_port("eod-settler"))
    database_url: str = Field(default_factory=lambda: dev_database_url("eod_settler"))
    db_pool_timeout: float = Field(default=2.0, gt=0)
    """Seconds to wait for a pooled connection before a request gets 503."""
    db_operation_timeout: float = Field(default=3.0, gt=0)
    """Client-side deadline of an API read or readiness ping (a frozen server never answers)."""
    db_statement_timeout: float = Field(default=30.0, gt=0)
    """PostgreSQL `statement_timeout` of every session (a settle run's COPY included)."""
    vault: SettlerVault = Field(
        default_factory=lambda: SettlerVault(addr=f"http://127.0.0.1:{dev_port('openbao')}")
    )
    # Dev only: a key without Vault (tests, alpaca-sim).
    alpaca_key_id: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    alpaca_data_url: str = "https://data.alpaca.markets"
    alpaca_trading_url: str = "https://paper-api.alpaca.markets"
    alpaca_plan: AlpacaPlan = Field(
        default=AlpacaPlan.BASIC,
        validation_alias=AliasChoices("EOD_ALPACA_PLAN", "ALPACA_PLAN", "alpaca_plan"),
    )
    """`ALPACA_PLAN` (shared with the hub; `EOD_ALPACA_PLAN` wins when both are set): the
    defaults of `alpaca_options_feed` and `rest_rate_per_min`."""
    alpaca_feed: Literal["sip", "iex"] = "sip"
    """Feed of the stock settle (bars; auctions are SIP only). SIP history older than 15 minutes
    is free on every plan, and the settler never asks for a more recent window, so SIP is right
    on Basic too: the plan does not change it; `iex` is an explicit override for testing only."""
    alpaca_options_feed: Literal["opra", "indicative"] = "opra"
    """Option quotes feed; from the plan (`indicative` on Basic, `opra` on Algo Trader Plus);
    `opra` falls back to `indicative` when the key answers 403."""
    rest_rate_per_min: float = Field(default=200.0, gt=0)
    rest_burst: int = Field(default=1, ge=1)
    """Token-bucket capacity; 1 spaces requests evenly, which no server-side limiter refuses."""
    rest_concurrency: int = Field(default=4, ge=1)
    bars_symbols_per_request: int = Field(default=10_000, ge=1)
    """Count cap per bars request (10,000 = one full page of daily bars)."""
    bars_max_query_bytes: int = Field(default=7800, ge=100)
    """Budget for the encoded `symbols` parameter: keeps the request line under 8 KiB."""
    options_symbols_per_request: int = Field(default=100, ge=1)
    corpactions_symbols_per_request: int = Field(default=1000, ge=1)
    """Symbols per `/v1/corporate-actions` request (also bounded by `bars_max_query_bytes`)."""
    corpactions_window_days: int = Field(default=45, ge=0)
    """Days either side of the date asked of Alpaca (its `start`/`end` filter is not the
    ex-date for every type); actions are then kept only when effective on the date."""
    corpactions_at: str = "08:00"
    """Local (`timezone`) time on each trading day when the day's corporate actions are
    published; before the 09:30 open."""
    settle_lag_seconds: float = Field(default=900.0, ge=0)
    symbols: CsvList = Field(default_factory=list)
    timezone: str = "America/New_York"
    stream_max_age_days: int = Field(default=400, ge=3)
    dedup_window_seconds: int = Field(default=7 * 86_400, ge=2 * 86_400)
    publish_batch: int = Field(default=1000, ge=1)
    publish_timeout_seconds: float = 10.0
    reread_local_time: dt.time = dt.time(7, 0)
    """When (exchange time, the morning after a session) the settled session is read again: a
    close moved by late prints or corrections becomes revision n+1, once."""
    catchup_sessions: int = Field(default=3, ge=0)
    late_grace_seconds: float = 1800.0
    interest_flush_seconds: float = 1.0
    scheduler_poll_seconds: float = 60.0
    fault_point: FaultPoint = ""
    """Dev-only crash point for tests: `after_write` kills the process after the first DB write."""

    @field_validator("symbols", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _plan_defaults(self) -> Settings:
        row = limits(self.alpaca_plan)
        fill_unset(
            self,
            {"alpaca_options_feed": row.options_feed,
             "rest_rate_per_min": float(row.rest_rate_per_min)},
        )  # fmt: skip
        return self

    @model_validator(mode="after")
    def _prod_rules(self) -> Settings:
        if self.env == "prod":
            if self.alpaca_key_id or self.alpaca_secret_key:
                raise ValueError("EOD_ALPACA_KEY_ID/SECRET_KEY are dev-only; use Vault in prod")
            if self.fault_point:
                raise ValueError("EOD_FAULT_POINT is dev-only")
        if self.dedup_window_seconds > self.stream_max_age_days * 86_400:
            raise ValueError("dedup window must not exceed the stream's max age")
        return self
