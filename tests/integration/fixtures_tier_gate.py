"""tier-gate's operator-mode stack for integration tests (imported by test_tier_gate_* and
test_md_client_*): `init` against the real OpenBao and PostgreSQL fixtures, a real nats-server in
operator/JWT mode from the written config, and tier-gate served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
import uvicorn
from nats.aio.client import Client
from raxx_contracts import TierChanged, default_policy, encode, subjects, utc_now
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from tier_gate.adapters.vault import Vault as VaultClient
from tier_gate.app import create_app
from tier_gate.bootstrap import InitOptions, InitResult, run_init
from tier_gate.settings import Settings, VaultSettings

from tests.integration.fixtures.servers import Vault


@dataclass
class Violations:
    """Errors a nats-py client reported through `error_cb` (permission violations are async)."""

    errors: list[str] = field(default_factory=list)

    async def cb(self, exc: Exception) -> None:
        """The `error_cb` to hand nats-py."""
        self.errors.append(str(exc))

    def about(self, subject: str) -> list[str]:
        """Violations naming `subject` (nats-py lower-cases the server's error text)."""
        return [e for e in self.errors if f'"{subject.lower()}"' in e.lower()]


@dataclass
class HubPublisher:
    """The hub's identity publishing `md.*` subjects through their capture streams."""

    nc: Client

    async def publish(self, subject: str, data: bytes) -> None:
        """Publish what subscribers will see on `subject` (a public `md.rt`/`md.delayed` one)."""
        await self.nc.publish(subjects.to_capture(subject), data)

    async def flush(self) -> None:
        """Flush the connection."""
        await self.nc.flush()

    async def close(self) -> None:
        """Close the connection."""
        await self.nc.close()


@dataclass
class TierGateStack:
    """A running operator-mode nats-server + tier-gate, and helpers to drive them."""

    out: Path
    init: InitResult
    settings: Settings
    nats_server: servers.Server
    base_url: str
    http: httpx.AsyncClient
    _server_task: asyncio.Task[None] | None = None
    _uvicorn: uvicorn.Server | None = None

    @property
    def nats_url(self) -> str:
        """URL of the operator-mode nats-server."""
        return self.nats_server.url

    def creds(self, name: str) -> Path:
        """A service's dev creds file (hub, settler, billing, dev-admin, ...)."""
        return self.out / f"{name}.creds"

    async def service(self, name: str, **kwargs: Any) -> Client:
        """Connect as a service user."""
        return await nats.connect(
            self.nats_url, user_credentials=str(self.creds(name)), allow_reconnect=False, **kwargs
        )

    async def hub_publisher(self) -> HubPublisher:
        """Connect as the hub, declare the capture streams as the hub does, and publish market
        data the hub's way (on `mdcap.*`; the streams republish it on `md.*`)."""
        from market_data_hub.adapters.nats import capture_config
        from market_data_hub.settings import Settings as HubSettings
        from nats.js.errors import BadRequestError
        from raxx_contracts import AssetClass
        from raxx_contracts import Path as MdPath

        nc = await self.service("hub")
        js = nc.jetstream()
        for path in MdPath:
            for asset in AssetClass:
                cfg = capture_config(path, asset, HubSettings())
                try:
                    await js.add_stream(cfg)
                except BadRequestError:
                    await js.update_stream(cfg)
        return HubPublisher(nc)

    async def identity(self, user: str, tier: str) -> str:
        """A dev identity JWT for `user`, recording `tier` as billing would."""
        resp = await self.http.post("/dev/identity", json={"user": user, "tier": tier})
        resp.raise_for_status()
        token: str = resp.json()["token"]
        return token

    async def token(self, user: str, tier: str | None = None, **body: Any) -> dict[str, Any]:
        """`POST /v1/tokens` for `user` (recording `tier` first when given)."""
        ident = await self.identity(user, tier) if tier else await self.identity_only(user)
        resp = await self.http.post(
            "/v1/tokens", headers={"Authorization": f"Bearer {ident}"}, json=body or None
        )
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def identity_only(self, user: str) -> str:
        """An identity JWT without touching the stored tier (dev key, offline signing)."""
        from tier_gate import identity, keys

        vault = VaultClient(self.settings.vault)
        key = keys.okp_from_secret(await vault.read(keys.PATH_DEV_IDENTITY), "dev")
        return identity.dev_identity_token(
            key, user_id=user, tier="?", issuer=self.settings.identity_issuer,
            audience=self.settings.identity_audience,
        )  # fmt: skip

    async def connect_user(
        self, creds_text: str, violations: Violations | None = None, **kwargs: Any
    ) -> Client:
        """Connect with a tier-gate credential (no reconnect: we want to see cut-offs)."""
        from nats.aio.client import RawCredentials

        nc = Client()
        try:
            await nc.connect(
                self.nats_url,
                user_credentials=RawCredentials(creds_text),
                error_cb=(violations or Violations()).cb,
                allow_reconnect=False,
                **kwargs,
            )
        except BaseException:
            # nats-py leaves the socket open when the server refuses the connect.
            with contextlib.suppress(Exception):
                await nc.close()
            if nc._transport is not None:
                nc._transport.close()
            raise
        return nc

    async def publish_tier(self, user: str, tier: str, version: int) -> None:
        """Publish a TierChanged into BILLING as billing would."""
        nc = await self.service("billing")
        try:
            event = TierChanged(user_id=user, tier=tier, version=version, timestamp=utc_now())
            js = nc.jetstream()
            await js.publish(subjects.BILLING_TIER_CHANGED, encode(event))
        finally:
            await nc.close()

    async def start_tier_gate(self) -> None:
        """(Re)start tier-gate in this event loop; returns once /readyz says ready."""
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=self.settings.http_port,
            log_level="warning", lifespan="on",
        )  # fmt: skip
        self._uvicorn = uvicorn.Server(config)
        self._server_task = asyncio.create_task(self._uvicorn.serve())
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/readyz")).status_code == 200:
                    return
            if self._server_task.done():
                self._server_task.result()
            await asyncio.sleep(0.05)
        raise RuntimeError("tier-gate did not become ready")

    async def stop_tier_gate(self) -> None:
        """Stop tier-gate (graceful shutdown)."""
        if self._uvicorn is not None and self._server_task is not None:
            self._uvicorn.should_exit = True
            await self._server_task
            self._uvicorn = None
            self._server_task = None

    def restart_nats(self) -> None:
        """Restart nats-server on the same port (MEMORY resolver forgets pushed JWTs)."""
        self.nats_server.stop()
        self.nats_server = servers.start_nats(
            self.out / "srv", port=self.nats_server.port,
            config=self.init.config_path, jetstream=False,
        )  # fmt: skip


StackFactory = Callable[..., Awaitable[TierGateStack]]


@pytest_asyncio.fixture
async def tier_gate_stack_factory(
    vault: Vault, postgres_dsn: str, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Build stacks with setting overrides (`factory(credential_ttl=3)`); torn down after."""
    stacks: list[TierGateStack] = []

    async def factory(**overrides: Any) -> TierGateStack:
        out = tmp_path / f"nats-{len(stacks)}"
        port = free_port()
        vault_settings = VaultSettings(addr=vault.addr, token=vault.token)
        init = await run_init(
            VaultClient(vault_settings),
            default_policy(),
            InitOptions(dev=True, out=out, nats_listen=f"127.0.0.1:{port}"),
        )
        nats_server = servers.start_nats(out / "srv", port=port, config=init.config_path,
                                         jetstream=False)  # fmt: skip
        http_port = free_port()
        values: dict[str, Any] = {
            "env": "dev",
            "nats_url": nats_server.url,
            "nats_creds": out / "tier-gate.creds",
            "nats_sys_creds": out / "tier-gate-sys.creds",
            "database_url": postgres_dsn,
            "vault": vault_settings,
            "http_port": http_port,
            "billing_durable": f"tg-{uuid.uuid4().hex[:8]}",
        }
        values.update(overrides)
        settings = Settings(**values)
        base = f"http://127.0.0.1:{http_port}"
        stack = TierGateStack(
            out, init, settings, nats_server, base, httpx.AsyncClient(base_url=base, timeout=10)
        )
        stacks.append(stack)
        await stack.start_tier_gate()
        return stack

    yield factory
    for stack in stacks:
        await stack.stop_tier_gate()
        await stack.http.aclose()
        stack.nats_server.stop()


@pytest_asyncio.fixture
async def tier_gate_stack(tier_gate_stack_factory: StackFactory) -> TierGateStack:
    """A default stack (policy TTLs)."""
    return await tier_gate_stack_factory()


def unique_user(prefix: str = "u") -> str:
    """A user id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


__all__ = [
    "StackFactory",
    "TierGateStack",
    "Violations",
    "pytest",
    "tier_gate_stack",
    "tier_gate_stack_factory",
    "unique_user",
]
