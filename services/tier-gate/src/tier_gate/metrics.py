"""Prometheus metrics on a per-app registry (no per-user labels)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from raxx_service_kit.supervisor import restarts_counter


@dataclass
class Metrics:
    """Every `tg_` metric of one app instance."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.issued = Counter(
            "tg_credentials_issued", "Credentials issued, by tier.", ["tier"], registry=r
        )
        self.failures = Counter(
            "tg_issuance_failures", "Token requests refused or failed, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "tg_issuance_seconds",
            "Time to issue one credential (identity check to response).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.revocations_pushed = Counter(
            "tg_revocation_pushes", "Account JWTs with revocations pushed to NATS.", registry=r
        )
        self.revocation_push_failures = Counter(
            "tg_revocation_push_failures", "Revocation pushes that failed.", registry=r
        )
        self.credentials_revoked = Counter(
            "tg_credentials_revoked", "User credentials revoked (downgrades).", registry=r
        )
        self.billing_applied = Counter(
            "tg_billing_events_applied", "Tier changes applied.", registry=r
        )
        self.task_restarts = restarts_counter(r, "tg")
        self.billing_ignored = Counter(
            "tg_billing_events_ignored",
            "Tier changes ignored (stale version, unknown tier).",
            ["reason"],
            registry=r,
        )
