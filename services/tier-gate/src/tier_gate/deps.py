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
from tier_gate.service import TierGate
from tier_gate.settings import Settings

log = logging.getLogger(__name__)


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

    async def down(self) -> list[str]:
        """Names of dependencies or tasks that are not healthy right now."""
        down: list[str] = []
        if not await self.db.ping():
            down.append("postgres")
        if not await self.vault.ping():
            down.append("openbao")
        if not self.nc.is_connected:
            down.append("nats")
        if not self.sys_nc.is_connected:
            down.append("nats-system")
        down.extend(f"task:{name}" for name in self.failing)
        return down

    async def stop(self) -> None:
        """Cancel tasks, drain clients, close the pool."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for nc in (self.nc, self.sys_nc):
            if not nc.is_closed:
                await nc.close()
        await self.db.close()
