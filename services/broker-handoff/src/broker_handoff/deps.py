"""The collaborators a broker-handoff app works with (real ones built from settings, or fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from raxx_service_kit.clock import Clock, SystemClock
from raxx_service_kit.jwt import JwtVerifier
from raxx_service_kit.postgres import DbTimeouts

from broker_handoff.adapters.alpaca import AlpacaOAuth, AlpacaTrading
from broker_handoff.adapters.postgres import Store
from broker_handoff.adapters.vault import VaultStore
from broker_handoff.auth import identity_verifier
from broker_handoff.metrics import Metrics
from broker_handoff.settings import Settings


@dataclass
class Deps:
    """Everything with IO, handed to the app factory (NATS is the app's own kit broker)."""

    store: Store
    vault: VaultStore
    oauth: AlpacaOAuth
    trading: AlpacaTrading
    identity: JwtVerifier
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = field(default_factory=SystemClock)


def build_deps(settings: Settings) -> Deps:
    """Real adapters from settings; nothing connects until the app's lifespan opens them."""
    metrics = Metrics()
    return Deps(
        store=Store(
            settings.database_url,
            max_size=settings.db_pool_max_size,
            timeouts=DbTimeouts(
                pool=settings.db_acquire_timeout_seconds,
                statement=settings.db_statement_timeout_ms / 1000,
                connect=settings.db_connect_timeout_seconds,
                reconnect=settings.db_reconnect_timeout_seconds,
            ),
            retry_after=settings.retry_after_seconds,
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
        identity=identity_verifier(settings),
        metrics=metrics,
    )
