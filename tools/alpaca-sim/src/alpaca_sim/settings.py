"""Settings of the simulator: environment variables with the `SIM_` prefix, CLI flags on top."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alpaca_sim.plans import PLAN_DEFAULTS, PLAN_FIELDS, Plan

ALL_FEEDS = ("iex", "sip", "delayed_sip", "test", "indicative", "opra")
DEFAULT_UNIVERSE = (
    "AAPL,MSFT,AMZN,GOOGL,META,NVDA,TSLA,AMD,INTC,NFLX,SPY,QQQ,IWM,JPM,BAC,XOM,CVX,KO,PEP,WMT,"
    "DIS,BA,CSCO,ORCL,IBM,T,VZ,PFE,MRK,JNJ"
)

CsvList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the simulator can be told; see README.md for the meaning of each field."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 18700
    port_file: str | None = None

    # Credentials and entitlements.
    key: str = "sim-key"
    secret: SecretStr = SecretStr("sim-secret")
    plan: Plan = "none"  # basic / algo_trader_plus set the defaults of the PLAN_FIELDS
    feeds: CsvList = Field(default_factory=lambda: list(ALL_FEEDS))
    connection_limit: int = 1
    symbol_cap: int = 0  # distinct symbols per stock stream connection; 0 = unlimited
    option_quote_cap: int = 0  # option quote subscriptions per connection; 0 = unlimited
    allow_star: bool = True
    auth_timeout: float = 10.0

    # Market data.
    seed: int = 42
    rate: float = 50.0  # stream messages per second across all subscribed symbols
    tick_ms: float = 10.0
    send_buffer_bytes: int = 8 * 1024 * 1024  # per connection; past it: 407 slow client
    max_batch: int = 2000  # data messages per frame
    universe: CsvList = Field(default_factory=lambda: DEFAULT_UNIVERSE.split(","))
    halted: CsvList = Field(default_factory=list)  # SYM or SYM@YYYY-MM-DD: no prints
    no_auction: CsvList = Field(default_factory=list)  # symbols without a closing auction
    delayed_sip_seconds: float = 900.0

    # REST.
    rest_rate_limit: int = 200  # requests per minute per key; 0 = unlimited
    page_size_cap: int = 10_000  # a page never holds more, whatever `limit` says

    # Calendar.
    extra_holidays: CsvList = Field(default_factory=list)
    extra_half_days: CsvList = Field(default_factory=list)

    # OAuth.
    oauth_client_id: str = "sim-client"
    oauth_client_secret: SecretStr = SecretStr("sim-client-secret")
    oauth_redirect_uris: CsvList = Field(
        default_factory=lambda: ["http://127.0.0.1:8083/v1/broker/alpaca/callback"]
    )
    oauth_code_ttl: float = 600.0

    # Trading.
    starting_cash: float = 100_000.0

    @field_validator(
        "feeds",
        "universe",
        "halted",
        "extra_holidays",
        "extra_half_days",
        "no_auction",
        "oauth_redirect_uris",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split(value)

    @field_validator("feeds")
    @classmethod
    def _known_feeds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALL_FEEDS))
        if unknown:
            raise ValueError(f"unknown feeds {unknown}; known: {', '.join(ALL_FEEDS)}")
        return value

    @model_validator(mode="after")
    def _plan_defaults(self) -> Settings:
        if self.plan == "none":
            return self
        explicit = set(self.model_fields_set)
        for name in PLAN_FIELDS:
            if name not in explicit:
                value = PLAN_DEFAULTS[self.plan][name]
                setattr(self, name, list(value) if isinstance(value, list) else value)
        self.__pydantic_fields_set__ = explicit
        return self

    @field_validator("extra_holidays", "extra_half_days")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for item in value:
            date.fromisoformat(item)
        return value
