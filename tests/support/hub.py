"""Test support for the hub (moved out of the package): test tokens and JWKS, settings for a
local stack, and an in-process hub runner. Used by the hub's tests and its benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hvac
import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from market_data_hub.app import Deps, Hub, create_app
from market_data_hub.settings import Settings, VaultSettings
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig
from raxx_contracts import subjects


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenMinter:
    """A local Ed25519 key standing in for tier-gate: writes a JWKS file, mints HTTP tokens."""

    def __init__(self, directory: Path, kid: str = "test-key") -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = kid
        pub = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.jwks_path = directory / "jwks.json"
        self.jwks_path.write_text(
            json.dumps(
                {
                    "keys": [
                        {
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": _b64(pub),
                            "kid": kid,
                            "alg": "EdDSA",
                            "use": "sig",
                        }
                    ]
                }
            )
        )

    def token(self, user: str, tier: str, ttl: int = 600, **claims: Any) -> str:
        """A tier-gate-shaped HTTP token."""
        body = {"sub": user, "tier": tier, "aud": "raxx-md-http", "iss": "raxx-tier-gate",
                "iat": int(time.time()), "exp": int(time.time()) + ttl, **claims}  # fmt: skip
        head = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}).encode())
        payload = _b64(json.dumps(body).encode())
        sig = self.key.sign(f"{head}.{payload}".encode())
        return f"{head}.{payload}.{_b64(sig)}"


def write_alpaca_key(
    vault_addr: str, vault_token: str, path: str, key_id: str = "sim-key",
    secret: str = "sim-secret",  # noqa: S107 - the simulator's public test secret
) -> int:  # fmt: skip
    """Write the Alpaca key to KV v2 at `secret/<path>`; return the new version."""
    client = hvac.Client(url=vault_addr, token=vault_token)
    resp = client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"key_id": key_id, "secret_key": secret}, mount_point="secret"
    )
    return int(resp["data"]["version"])


def local_settings(
    nats_url: str, vault_addr: str, vault_token: str, sim_url: str, sim_ws: str, **overrides: Any
) -> Settings:
    """Settings for a hub against local servers, with short timers for tests."""
    path = overrides.pop("vault_path", f"raxx/alpaca/market-data-{uuid.uuid4().hex[:8]}")
    base: dict[str, Any] = {
        "nats_url": nats_url,
        "vault": VaultSettings(addr=vault_addr, token=vault_token, path=path, poll_seconds=0.5),
        "alpaca_data_url": sim_url,
        "alpaca_stream_url": sim_ws,
        "alpaca_trading_url": sim_url,
        "delay_seconds": 2,
        "linger_seconds": 1,
        "leader_ttl_seconds": 3,
        "watchdog_seconds": 5,
        "backoff_initial_seconds": 0.1,
        "backoff_max_seconds": 1,
        "slot_busy_seconds": 1.5,
        "rest_max_retries": 1,
        "latest_flush_seconds": 0.1,
        "replica_id": f"r-{uuid.uuid4().hex[:6]}",
    }
    base.update(overrides)
    return Settings(**base)


async def declare_user_tiers_bucket(nats_url: str) -> None:
    """Create tier-gate's user-tier KV bucket on a no-auth server, as tier-gate would.

    The hub only reads it; without it a paid-tier HTTP token is refused (fail safe).
    """
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().create_key_value(
            KeyValueConfig(bucket=subjects.USER_TIERS_BUCKET, history=1)
        )
    finally:
        await nc.close()


@asynccontextmanager
async def running_hub(settings: Settings, deps: Deps | None = None) -> AsyncIterator[FastAPI]:
    """Start a hub in this event loop (lifespan included); yields its ASGI app.

    On a no-auth server (no creds) the user-tier bucket tier-gate owns is declared first.
    """
    if settings.nats_creds is None:
        await declare_user_tiers_bucket(settings.nats_url)
    app = create_app(settings, deps)
    h: Hub = app.state.new_hub()
    app.state.hub = h
    await h.start()
    try:
        yield app
    finally:
        await h.stop()


async def read_capture(
    nc: Client,
    stream: str,
    subject: str,
    start_seq: int = 1,
    *,
    inbox_prefix: str = "_INBOX",
    batch: int = 256,
    timeout: float = 5,  # noqa: ASYNC109
) -> list[Msg]:
    """Every message stored in capture `stream` on `subject` (a capture subject or pattern)
    from `start_seq`, read the way a consumer recovers a gap: batch direct gets
    (`next_by_subj`), each answered by up to `batch` messages and an end-of-batch status."""
    out: list[Msg] = []
    seq = start_seq
    while True:
        inbox = f"{inbox_prefix}.{uuid.uuid4().hex}"
        sub = await nc.subscribe(inbox)
        body = json.dumps({"seq": seq, "next_by_subj": subject, "batch": batch}).encode()
        got = 0
        try:
            await nc.publish(subjects.direct_get(stream), body, reply=inbox)
            while True:
                msg = await sub.next_msg(timeout)
                status = (msg.headers or {}).get("Status")
                if status == "204":  # end of batch
                    break
                if status is not None:  # 404: nothing (more) stored on the subject
                    return out
                out.append(msg)
                got += 1
                seq = int((msg.headers or {})[subjects.HDR_SEQUENCE]) + 1
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if got < batch:
            return out


async def request_interest(
    nc: Client,
    data: bytes,
    *,
    user: str = "test-user",
    tier: str = "pro",
    timeout: float = 5,  # noqa: ASYNC109
) -> Msg:
    """Send an interest request as `user` at `tier` (its own subject, a reply in its own inbox),
    as a tier-gate credential would on an unauthenticated test server."""
    subject = subjects.interest(tier, subjects.user_token(user))
    deadline = time.monotonic() + timeout
    while True:
        inbox = f"{subjects.user_inbox_prefix(user)}.{uuid.uuid4().hex}"
        sub = await nc.subscribe(inbox, max_msgs=1)
        try:
            await nc.publish(subject, data, reply=inbox)
            msg = await sub.next_msg(max(0.1, deadline - time.monotonic()))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        # A 503 status is the server's "no responders" (a hub still subscribing): retry.
        if (msg.headers or {}).get("Status") != "503" or time.monotonic() > deadline:
            return msg
        await asyncio.sleep(0.1)
