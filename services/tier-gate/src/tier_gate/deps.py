"""The runtime object the lifespan builds and handlers receive (no globals)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OKPKey
from nats.aio.client import Client

from tier_gate.adapters.postgres import Database
from tier_gate.adapters.vault import Vault
from tier_gate.identity import IdentityVerifier
from tier_gate.metrics import Metrics
from tier_gate.readiness import Readiness
from tier_gate.service import TierGate
from tier_gate.settings import Settings

log = logging.getLogger(__name__)

ESSENTIAL_TASKS = frozenset({"group-commit"})
"""Background tasks issuance cannot do without (the others only degrade the replica)."""


@dataclass
class Deps:
    """Optional overrides for tests (anything left None is built from settings)."""

    vault: Vault | None = None
    db: Database | None = None


@dataclass
class Runtime:
    """Everything live: clients, the service object, supervised tasks."""

    settings: Settings
    metrics: Metrics
    db: Database
    vault: Vault
    gate: TierGate
    verifier: IdentityVerifier
    http_jwks: dict[str, Any]
    dev_identity_key: OKPKey | None
    nc: Client
    sys_nc: Client
    readiness: Readiness | None = None
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)

    def supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` forever: log and restart (with backoff) when it fails."""

        async def _loop() -> None:
            delay = 0.5
            while True:
                try:
                    await factory()
                    self.failing.pop(name, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failing[name] = str(exc) or type(exc).__name__
                    log.exception("background task %s failed; restarting in %.1fs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

        self.tasks[name] = asyncio.create_task(_loop(), name=f"tier-gate:{name}")

    def state(self) -> tuple[dict[str, str], dict[str, str]]:
        """(down, degraded) right now, from cached probes plus live conditions; never waits."""
        if self.readiness is None:
            return {"readiness": "not started"}, {}
        return self.readiness.snapshot()

    def live_conditions(self) -> dict[str, tuple[bool, str]]:
        """Conditions known without probing: the database outage flag and failing tasks."""
        found: dict[str, tuple[bool, str]] = {}
        if self.db.outage is not None:
            found["postgres"] = (True, f"{self.db.outage} (credentials cannot be recorded)")
        for name, reason in self.failing.items():
            essential = name in ESSENTIAL_TASKS
            found[f"task:{name}"] = (essential, f"failing, restarting: {reason}")
        return found

    async def stop(self) -> None:
        """Cancel tasks, drain clients, close the pool."""
        if self.readiness is not None:
            self.readiness.stop()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for nc in (self.nc, self.sys_nc):
            if not nc.is_closed:
                await nc.close()
        await self.db.close()
