"""The collaborators a broker-handoff app works with (real ones built from settings, or fakes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from broker_handoff.adapters.alpaca import AlpacaOAuth, AlpacaTrading
from broker_handoff.adapters.nats import Bus
from broker_handoff.adapters.postgres import Store
from broker_handoff.adapters.vault import VaultStore
from broker_handoff.auth import IdentityVerifier
from broker_handoff.metrics import Metrics
from broker_handoff.settings import Settings


def utc_clock() -> dt.datetime:
    """Now, tz-aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Deps:
    """Everything with IO, handed to the app factory."""

    store: Store
    vault: VaultStore
    oauth: AlpacaOAuth
    trading: AlpacaTrading
    bus: Bus
    identity: IdentityVerifier
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], dt.datetime] = utc_clock


def build_deps(settings: Settings) -> Deps:
    """Real adapters from settings; nothing connects until the app's lifespan opens them."""
    metrics = Metrics()
    return Deps(
        store=Store(
            settings.database_url,
            max_size=settings.db_pool_max_size,
            acquire_timeout=settings.db_acquire_timeout_seconds,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            reconnect_timeout=settings.db_reconnect_timeout_seconds,
        ),
        vault=VaultStore(settings.vault, on_error=lambda op: metrics.vault_errors.labels(op).inc()),
        oauth=AlpacaOAuth(
            settings.alpaca_oauth_url,
            settings.alpaca_trading_url,
            settings.oauth_client_id,
            settings.oauth_scope,
            settings.alpaca_timeout_seconds,
        ),
        trading=AlpacaTrading(settings.trading_url("live"), settings.trading_url("paper")),
        bus=Bus(settings.nats_url, settings.nats_creds),
        identity=IdentityVerifier(
            settings.identity_jwks_url,
            settings.identity_issuer,
            settings.identity_audience,
            settings.identity_jwks_min_refresh_seconds,
        ),
        metrics=metrics,
    )
