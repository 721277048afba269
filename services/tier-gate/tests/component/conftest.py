"""Fakes for tier-gate's component tests (no servers): OpenBao, PostgreSQL and the raw NATS
side, plus a running app under httpx's ASGI transport and faststream's TestNatsBroker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from faststream.nats import NatsBroker, NatsMessage, TestNatsBroker
from raxx_contracts import TierChanged, default_policy, subjects
from raxx_service_kit.errors import PermanentError
from tier_gate.adapters.postgres import IssuedCredential, Recorded, TierApplied
from tier_gate.app import create_app
from tier_gate.bootstrap import InitOptions, run_init
from tier_gate.deps import Deps, Runtime
from tier_gate.errors import DatabaseUnavailableError
from tier_gate.settings import Settings


class FakeVault:
    """KV v2 in a dict (what `tier_gate.adapters.vault.Vault` offers)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.up = True

    async def read(self, path: str) -> dict[str, Any] | None:
        return self.data.get(path)

    async def write(self, path: str, data: dict[str, Any], *, cas: int | None = None) -> int:
        if cas == 0 and path in self.data:
            raise PermanentError("cas")
        self.data[path] = dict(data)
        return 1

    async def create_if_absent(self, path: str, data: dict[str, Any]) -> bool:
        if path in self.data:
            return False
        self.data[path] = dict(data)
        return True

    async def ensure(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        await self.create_if_absent(path, data)
        return self.data[path]

    async def ping(self) -> bool:
        return self.up


@dataclass
class FakeDatabase:
    """tg_entitlements / tg_credentials in dicts; `down` makes every call a 503."""

    tiers: dict[str, tuple[str, int]] = field(default_factory=dict)
    creds: dict[str, IssuedCredential] = field(default_factory=dict)
    revoked: dict[str, int] = field(default_factory=dict)
    down: bool = False

    @property
    def outage(self) -> str | None:
        return "connection refused" if self.down else None

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailableError(log_detail="fake: PostgreSQL down")

    async def open(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    async def ping(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        self._check()

    async def get_tier(self, user_id: str) -> tuple[str, int] | None:
        self._check()
        return self.tiers.get(user_id)

    async def apply_tier(
        self,
        user_id: str,
        tier: str,
        version: int | None,
        *,
        revoke_for: Callable[[str, str], Sequence[str]],
        default_tier: str,
        now: int,
    ) -> TierApplied:
        self._check()
        old = self.tiers.get(user_id)
        old_tier, old_version = old if old else (None, None)
        new_version = (old_version or 0) + 1 if version is None else version
        if old_version is not None and new_version <= old_version:
            return TierApplied(False, old_tier, old_version, new_version)
        self.tiers[user_id] = (tier, new_version)
        doomed = set(revoke_for(old_tier or default_tier, tier))
        revoked = tuple(
            c.user_pub
            for c in self.creds.values()
            if c.user_id == user_id and c.tier in doomed and c.expires_at > now
        )
        for pub in revoked:
            self.revoked[pub] = now
        return TierApplied(True, old_tier or default_tier, old_version, new_version, revoked)

    async def record_credentials(self, creds: Sequence[IssuedCredential]) -> Recorded:
        self._check()
        taken = set()
        for c in creds:
            owner = self.creds.get(c.user_pub)
            if owner is not None and owner.user_id != c.user_id:
                taken.add((c.user_pub, c.user_id))
            else:
                self.creds[c.user_pub] = c
        users = {c.user_id for c in creds}
        stored = {u: self.tiers[u] for u in users if u in self.tiers}
        return Recorded(stored, frozenset(taken))

    async def push_revocations(
        self, account_pub: str, now: int, push: Callable[[dict[str, int], int], Awaitable[None]]
    ) -> int:
        self._check()
        await push(dict(self.revoked), now)
        return len(self.revoked)

    async def prune(self, now: int, keep_seconds: int = 86400) -> int:
        return 0


@dataclass
class FakeBus:
    """The raw NATS side: what was announced, pushed and published."""

    announced: list[TierChanged] = field(default_factory=list)
    pushed: list[tuple[str, str]] = field(default_factory=list)
    published: list[TierChanged] = field(default_factory=list)
    up: bool = True

    async def announce(self, event: TierChanged) -> bool:
        self.announced.append(event)
        return True

    async def push_account(self, account_pub: str, account_jwt: str) -> str:
        self.pushed.append((account_pub, account_jwt))
        return "jwt updated"

    async def publish_tier(self, event: TierChanged) -> None:
        self.published.append(event)

    async def probe(self, system: bool = False) -> None:
        if not self.up:
            raise ConnectionError("reconnecting")

    async def close(self) -> None:
        return None


@dataclass
class Running:
    """A started app with its fakes."""

    app: FastAPI
    http: httpx.AsyncClient
    broker: NatsBroker
    vault: FakeVault
    db: FakeDatabase
    bus: FakeBus
    settled: list[tuple[str, Any]]
    dead: list[NatsMessage]

    @property
    def runtime(self) -> Runtime:
        rt: Runtime = self.app.state.runtime
        return rt

    async def identity(self, user: str, tier: str) -> str:
        resp = await self.http.post("/dev/identity", json={"user": user, "tier": tier})
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["token"]
        return token


@pytest_asyncio.fixture
async def running(tmp_path: Path, settled: list[tuple[str, Any]]) -> AsyncIterator[Running]:
    """tier-gate (env=dev) on fakes: keys made by the real `init` into the fake OpenBao."""
    vault, db, bus = FakeVault(), FakeDatabase(), FakeBus()
    await run_init(vault, default_policy(), InitOptions(dev=True, out=tmp_path))  # type: ignore[arg-type]
    settings = Settings(env="dev", readiness_interval=0.05)
    app = create_app(settings, Deps(vault=vault, db=db, bus=bus))  # type: ignore[arg-type]
    dead: list[NatsMessage] = []

    @app.state.broker.subscriber(subjects.dead_letter("tier-gate", ">"))
    async def on_dead(msg: NatsMessage) -> None:
        dead.append(msg)

    async with (
        TestNatsBroker(app.state.broker) as broker,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as http,
    ):
        yield Running(app, http, broker, vault, db, bus, settled, dead)
