"""Prometheus metrics on a per-app registry. Labels are small closed sets: never a user or token."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from raxx_service_kit.supervisor import restarts_counter


class Metrics:
    """Every metric broker-handoff exports (names listed in the service README)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connects = Counter(
            "bh_connects",
            "Connect attempts by outcome (started, connected, refusals).",
            ["outcome"],
            registry=r,
        )
        self.disconnects = Counter(
            "bh_disconnects",
            "Connections ended, by reason (user, tier_downgrade, admin_revoke).",
            ["reason"],
            registry=r,
        )
        self.revocations = Counter(
            "bh_revocations",
            "Provider-side token revocations by outcome.",
            ["outcome"],
            registry=r,
        )
        self.mass_revocation_tokens = Counter(
            "bh_mass_revocation_tokens",
            "Tokens handled by revoke-all, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.orders = Counter(
            "bh_orders",
            "Order requests by outcome.",
            ["outcome"],
            registry=r,
        )
        self.vault_errors = Counter(
            "bh_vault_errors",
            "Failed Vault operations, by operation.",
            ["op"],
            registry=r,
        )
        self.tier_changes = Counter(
            "bh_tier_changes",
            "billing.tier.changed events by outcome (applied, stale).",
            ["outcome"],
            registry=r,
        )
        self.task_restarts = restarts_counter(r, "bh")
        self.orphans_destroyed = Counter(
            "bh_orphan_secrets_destroyed",
            "Vault grants with no live database record, revoked and destroyed by the reconciler.",
            registry=r,
        )
        self.reconcile_runs = Counter(
            "bh_reconcile_runs",
            "Reconciler passes by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )
        self.up = Gauge("bh_up", "1 while the service runs.", registry=r)
        self.up.set(1)
