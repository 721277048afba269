"""The runtime object the lifespan builds and handlers receive (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OKPKey
from raxx_service_kit.clock import Clock, SystemClock
from raxx_service_kit.http import Check, Readiness
from raxx_service_kit.jwt import JwtVerifier
from raxx_service_kit.supervisor import Supervisor

from tier_gate.adapters.nats import NatsBus
from tier_gate.adapters.postgres import Database
from tier_gate.adapters.vault import Vault
from tier_gate.metrics import Metrics
from tier_gate.readiness import Probes
from tier_gate.service import TierGate
from tier_gate.settings import Settings

ESSENTIAL_TASKS = frozenset({"group-commit"})
"""Background tasks issuance cannot do without (the others only degrade the replica)."""


@dataclass
class Deps:
    """Optional overrides for tests (anything left None is built from settings)."""

    vault: Vault | None = None
    db: Database | None = None
    bus: NatsBus | None = None
    clock: Clock = field(default_factory=SystemClock)


@dataclass
class Runtime:
    """Everything live: clients, the service object, supervised tasks."""

    settings: Settings
    metrics: Metrics
    db: Database
    vault: Vault
    gate: TierGate
    verifier: JwtVerifier
    http_jwks: dict[str, Any]
    dev_identity_key: OKPKey | None
    bus: NatsBus
    supervisor: Supervisor
    probes: Probes | None = None

    def readiness(self) -> Readiness:
        """The kit's `/readyz` body from cached probes and live conditions; never waits."""
        checks = self.probes.checks() if self.probes is not None else {}
        if self.db.outage is not None:  # known at once, before the next probe
            checks["postgres"] = Check(
                ok=False, reason=f"{self.db.outage} (credentials cannot be recorded)"
            )
        problems = self.supervisor.problems()
        for h in self.supervisor.health():
            checks[f"task:{h.name}"] = Check(
                ok=h.name not in problems,
                reason=problems.get(h.name),
                critical=h.name in ESSENTIAL_TASKS,
            )
        return Readiness.of(checks)

    async def stop(self) -> None:
        """Stop tasks, close the connections and the pool."""
        await self.supervisor.stop()
        await self.bus.close()
        await self.db.close()
