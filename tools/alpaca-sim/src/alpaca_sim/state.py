"""Everything one simulator instance holds, built by `create_app` (never at import)."""

from __future__ import annotations

import hmac
from collections import Counter as CallCounter
from dataclasses import dataclass, field
from datetime import date

from prometheus_client import CollectorRegistry, Counter, Gauge

from alpaca_sim.calendar import TradingCalendar
from alpaca_sim.engine import Engine
from alpaca_sim.faults import Faults
from alpaca_sim.http_common import RateLimiter
from alpaca_sim.live import LiveMarket
from alpaca_sim.market import Market
from alpaca_sim.oauth import OAuthStore
from alpaca_sim.settings import Settings
from alpaca_sim.trading import Broker


class Metrics:
    """Prometheus metrics on a registry of this app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ws_connections = Gauge(
            "alpaca_sim_ws_connections", "Open stream connections", registry=self.registry
        )
        self.ws_messages = Counter(
            "alpaca_sim_ws_messages", "Data messages sent", ["feed"], registry=self.registry
        )
        self.rest_requests = Counter(
            "alpaca_sim_rest_requests", "REST requests", ["route", "status"], registry=self.registry
        )


@dataclass
class SimState:
    """One simulator: settings, market model, sessions, accounts and faults."""

    settings: Settings
    calendar: TradingCalendar = field(init=False)
    market: Market = field(init=False)
    live: LiveMarket = field(init=False)
    metrics: Metrics = field(init=False)
    engine: Engine = field(init=False)
    faults: Faults = field(init=False)
    oauth: OAuthStore = field(init=False)
    broker: Broker = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    rest_calls: CallCounter[str] = field(default_factory=CallCounter)
    stream_connects: CallCounter[str] = field(default_factory=CallCounter)
    """Websocket sessions opened, by endpoint path (a client's reconnect attempts)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.calendar = TradingCalendar(
            [date.fromisoformat(d) for d in s.extra_holidays],
            [date.fromisoformat(d) for d in s.extra_half_days],
        )
        self.market = Market(s.seed, self.calendar, s.halted)
        self.live = LiveMarket(self.market)
        self.metrics = Metrics()
        self.engine = Engine(self)
        self.faults = Faults()
        self.oauth = OAuthStore(s)
        self.broker = Broker(self)
        self.rate_limiter = RateLimiter(s.rest_rate_limit)

    def check_key(self, key: str | None, secret: str | None) -> bool:
        """Whether (key, secret) are the configured API credentials."""
        if key is None or secret is None:
            return False
        return hmac.compare_digest(key, self.settings.key) and hmac.compare_digest(
            secret, self.settings.secret.get_secret_value()
        )

    def identity_for_stream(self, key: str, secret: str) -> str | None:
        """Who a stream auth message is: the key, or the OAuth account for key `oauth`."""
        if key == "oauth":
            token = self.oauth.token(secret)
            return f"oauth:{token.account_id}" if token else None
        return key if self.check_key(key, secret) else None
