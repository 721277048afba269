"""A hub in this event loop against real nats-server, OpenBao and alpaca-sim, with a
service client for the `/alpaca` passthrough and a local tier-gate token minter."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import hvac
from market_data_hub.passthrough import secret_digest

from tests.integration.fixtures.servers import Vault
from tests.support.hub import TokenMinter, local_settings, running_hub, write_alpaca_key


@dataclass
class HubEnv:
    """What a test talks to."""

    client: httpx.AsyncClient
    app: Any
    minter: TokenMinter
    service_headers: dict[str, str]

    def user(self, user: str, tier: str) -> dict[str, str]:
        """Authorization header of a tier-gate HTTP token for `user` at `tier`."""
        return {"Authorization": f"Bearer {self.minter.token(user, tier)}"}


@asynccontextmanager
async def hub_env(
    own_nats: str, vault: Vault, data_url: str, ws_url: str, minter: TokenMinter, **overrides: Any
) -> AsyncIterator[HubEnv]:
    """Start the hub (options stream off), wait until ready, yield an ASGI client."""
    tag = uuid.uuid4().hex[:8]
    s = local_settings(
        own_nats, vault.addr, vault.token, data_url, ws_url, options_enabled=False,
        tier_gate_jwks_url=str(minter.jwks_path), **overrides,
    )  # fmt: skip
    s.vault.service_clients_path = f"raxx/market-data-hub/service-clients-{tag}"
    write_alpaca_key(vault.addr, vault.token, s.vault.path)
    secret = secrets.token_urlsafe(32)
    hvac.Client(url=vault.addr, token=vault.token).secrets.kv.v2.create_or_update_secret(
        path=s.vault.service_clients_path, mount_point="secret",
        secret={"eod-settler": secret_digest(secret)},
    )  # fmt: skip
    async with running_hub(s) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hub", timeout=60
        ) as client:
            for _ in range(300):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            yield HubEnv(
                client, app, minter,
                {"APCA-API-KEY-ID": "eod-settler", "APCA-API-SECRET-KEY": secret},
            )  # fmt: skip
