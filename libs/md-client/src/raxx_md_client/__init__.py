"""Raxx market-data consumer client: tier-gate credentials, NATS subscriptions, leases, and
gap-free delivery (detection and recovery from the capture streams)."""

from raxx_md_client.client import ALL_SYMBOLS, MODELS, CredentialSource, Item, MdClient, Wanted
from raxx_md_client.credentials import Credential, TierGateClient, TierGateError
from raxx_md_client.recovery import (
    ClientMetrics,
    Gap,
    GapReason,
    MdClientError,
    RecoveryDeniedError,
    RecoveryError,
    WindowExpiredError,
)

__all__ = [
    "ALL_SYMBOLS",
    "MODELS",
    "ClientMetrics",
    "Credential",
    "CredentialSource",
    "Gap",
    "GapReason",
    "Item",
    "MdClient",
    "MdClientError",
    "RecoveryDeniedError",
    "RecoveryError",
    "TierGateClient",
    "TierGateError",
    "Wanted",
    "WindowExpiredError",
]
