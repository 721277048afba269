"""Fakes for the hub's component tests (services/market-data-hub/tests/component): the app
from `create_app`, a hub that is built but never started (no NATS, Vault or Alpaca), and
tier-gate-shaped tokens from a local key."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet, OKPKey
from market_data_hub.app import Deps, Hub, create_app
from market_data_hub.auth import Caller
from market_data_hub.settings import Settings
from raxx_contracts import AssetClass, InterestReply, InterestRequest
from raxx_service_kit.jwt import sign


class Tokens:
    """An Ed25519 key standing in for tier-gate: a JWKS file and HTTP tokens."""

    def __init__(self, directory: Path) -> None:
        self.key = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps(KeySet([self.key]).as_dict(private=False)))

    def token(self, user: str, tier: str, ttl: int = 600, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": user, "tier": tier, "aud": "raxx-md-http", "iss": "raxx-tier-gate",
                "iat": now, "exp": now + ttl, **claims}  # fmt: skip
        return sign(self.key, body)

    def headers(self, user: str, tier: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, tier, **kw)}"}


class FakeKeys:
    """Stands in for the Vault key source (never read: the hub is not started)."""

    key = None


class FakeTiers:
    """tier-gate's user-tier bucket: everyone is still at the tier of its token."""

    async def check(self, who: Caller) -> None:
        return None


@dataclass
class FakeRest:
    """The REST gateway: no quote anywhere (the API then answers 404 `not_found`)."""

    calls: list[str] = field(default_factory=list)

    @property
    def client(self) -> Any:
        return type("Client", (), {"feed": type("Feed", (), {"value": "iex"})()})()

    async def call(self, name: str, key: Any, fn: Any, caller: str | None = None) -> Any:
        self.calls.append(name)
        return (None, "sip") if name == "quotes" else None


@dataclass
class FakeStore:
    """The interest KV store: accepts every symbol, records what it was asked."""

    seen: list[tuple[str, str, InterestRequest]] = field(default_factory=list)

    async def handle(self, tier: str, user_token: str, req: InterestRequest) -> InterestReply:
        self.seen.append((tier, user_token, req))
        return InterestReply(accepted=req.symbols, symbol_cap=30)

    async def confirm(self, asset: AssetClass, reply: InterestReply) -> InterestReply:
        return reply


@dataclass
class Env:
    app: FastAPI
    hub: Hub
    tokens: Tokens
    client: httpx.AsyncClient
    rest: FakeRest


def component_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        tier_gate_jwks_url=str(tmp_path / "jwks.json"),
        nats_url="nats://127.0.0.1:1",  # never connected: the hub is not started
        replica_id="component",
        **kw,
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tokens = Tokens(tmp_path)
    settings = component_settings(tmp_path)
    deps = Deps(keys=FakeKeys(), service_clients=None)  # type: ignore[arg-type]
    app = create_app(settings, deps)
    hub: Hub = app.state.new_hub()
    rest = FakeRest()
    hub.tiers = FakeTiers()  # type: ignore[assignment]
    hub.rest = rest  # type: ignore[assignment]
    app.state.hub = hub  # built, never started: no lifespan under ASGITransport
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        yield Env(app, hub, tokens, client, rest)
