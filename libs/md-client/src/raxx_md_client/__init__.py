"""Raxx market-data consumer client: tier-gate credentials, NATS subscriptions, leases."""

from raxx_md_client.client import MODELS, CredentialSource, MdClient, Wanted
from raxx_md_client.credentials import Credential, TierGateClient, TierGateError

__all__ = [
    "MODELS",
    "Credential",
    "CredentialSource",
    "MdClient",
    "TierGateClient",
    "TierGateError",
    "Wanted",
]
