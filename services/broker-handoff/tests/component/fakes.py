"""Fakes for the component layer: broker-handoff's `create_app` with in-memory fakes (no servers).

The fakes stand in for the adapters (PostgreSQL `Store`, the Vault `VaultStore`, Alpaca's
OAuth and trading clients); the identity verifier is the kit's, over a static key set; the
kit broker runs under faststream's `TestNatsBroker`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import httpx
from broker_handoff.adapters.alpaca import IssuedToken
from broker_handoff.adapters.postgres import Connection, ConnectLink, OAuthState, RevokeJob
from broker_handoff.adapters.vault import GRANTS_DIR, USERS_DIR, StoredToken, grant_path
from broker_handoff.domain import AccessToken, BrokerEnv
from broker_handoff.errors import StoreUnavailable, VaultUnavailable
from broker_handoff.metrics import Metrics
from broker_handoff.settings import Settings
from fastapi import FastAPI
from joserfc.jwk import OKPKey
from raxx_contracts import HandoffEvent
from raxx_service_kit.clock import ManualClock
from raxx_service_kit.jwt import sign

REDIRECT = "http://127.0.0.1:8083/v1/broker/alpaca/callback"
PROVIDER = "http://alpaca.test"


class FakeStore:
    """The `Store` surface broker-handoff uses, in memory; `down` makes every call fail."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.down = False
        self.tiers: dict[str, tuple[str, int]] = {}
        self.states: dict[str, OAuthState] = {}
        self.links: dict[str, ConnectLink] = {}
        self.connections: dict[str, Connection] = {}
        self.grants: dict[str, tuple[str, dt.datetime]] = {}
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.audits: list[tuple[str, str | None, str, str, dict[str, Any]]] = []
        self.jobs: list[RevokeJob] = []

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable()

    async def open(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return not self.down

    async def tier_of(self, user_id: str) -> str | None:
        self._check()
        got = self.tiers.get(user_id)
        return got[0] if got else None

    async def apply_tier(self, user_id: str, tier: str, version: int, _at: dt.datetime) -> bool:
        self._check()
        old = self.tiers.get(user_id)
        if old is not None and old[1] >= version:
            return False
        self.tiers[user_id] = (tier, version)
        return True

    async def save_state(
        self,
        key: str,
        user_id: str,
        env: str,
        code_verifier: str | None,
        redirect_uri: str,
        expires_at: dt.datetime,
        binding_hash: str,
        replaces: str | None = None,
    ) -> None:
        self._check()
        if replaces is not None:
            self.states.pop(replaces, None)
        self.states[key] = OAuthState(
            user_id, env, code_verifier, redirect_uri, expires_at, binding_hash
        )

    async def state(self, key: str) -> OAuthState | None:
        self._check()
        return self.states.get(key)

    async def claim_state(self, key: str, _stale_before: dt.datetime) -> OAuthState | None:
        self._check()
        row = self.states.get(key)
        if row is None or row.status != "pending":
            return None
        self.states[key] = replace(row, status="exchanging", claimed_at=self.clock.now())
        return self.states[key]

    async def fail_state(self, key: str, failure: str, expires_at: dt.datetime) -> None:
        self._check()
        if key in self.states:
            self.states[key] = replace(
                self.states[key], status="failed", failure=failure, expires_at=expires_at
            )

    async def delete_state(self, key: str) -> None:
        self._check()
        self.states.pop(key, None)

    async def save_link(self, key: str, user_id: str, env: str, expires_at: dt.datetime) -> None:
        self._check()
        self.links[key] = ConnectLink(user_id, env, expires_at)

    async def link(self, key: str) -> ConnectLink | None:
        self._check()
        got = self.links.get(key)
        return got if got and got.expires_at >= self.clock.now() else None

    async def consume_link(self, key: str) -> ConnectLink | None:
        self._check()
        got = self.links.pop(key, None)
        return got if got and got.expires_at >= self.clock.now() else None

    async def connection(self, user_id: str) -> Connection | None:
        self._check()
        return self.connections.get(user_id)

    async def begin_grant(self, grant_id: str, _user_id: str) -> None:
        self._check()
        self.grants[grant_id] = ("writing", self.clock.now())

    async def set_grant_status(
        self, grant_id: str, status: str, only_from: tuple[str, ...]
    ) -> bool:
        self._check()
        got = self.grants.get(grant_id)
        if got is None or got[0] not in only_from:
            return False
        self.grants[grant_id] = (status, self.clock.now())
        return True

    async def activate_grant(
        self, user_id: str, grant_id: str, env: str, scope: str, key: str
    ) -> str | None:
        self._check()
        if self.grants.get(grant_id, ("",))[0] != "writing":
            raise StoreUnavailable()
        self.grants[grant_id] = ("active", self.clock.now())
        old = self.connections.get(user_id)
        now = self.clock.now()
        self.connections[user_id] = Connection(
            user_id, env, "connected", scope, key, now, now, "", grant_id
        )
        previous = old.grant_id if old else None
        if previous and previous != grant_id:
            self.grants[previous] = ("retired", now)
            return previous
        return None

    async def grant_statuses(self, grant_ids: list[str]) -> dict[str, tuple[str, dt.datetime]]:
        self._check()
        return {g: self.grants[g] for g in grant_ids if g in self.grants}

    async def sweep_grants(self, _older_than: dt.timedelta) -> None:
        self._check()

    async def mark_disconnected(self, user_id: str, status: str, reason: str) -> bool:
        self._check()
        conn = self.connections.get(user_id)
        if conn is None or conn.status != "connected":
            return False
        self.connections[user_id] = replace(conn, status=status, reason=reason)
        if conn.grant_id and self.grants.get(conn.grant_id, ("",))[0] == "active":
            self.grants[conn.grant_id] = ("retired", self.clock.now())
        return True

    async def connected_user_ids(self) -> list[str]:
        self._check()
        return [u for u, c in self.connections.items() if c.status == "connected"]

    async def claim_order(
        self, user_id: str, coid: str, fingerprint: str
    ) -> tuple[bool, dict[str, Any]]:
        self._check()
        key = (user_id, coid)
        if key in self.orders:
            return False, self.orders[key]
        self.orders[key] = {"fingerprint": fingerprint, "state": "pending", "provider_order": None}
        return True, self.orders[key]

    async def record_order(self, user_id: str, coid: str, order: dict[str, Any]) -> None:
        self._check()
        self.orders[(user_id, coid)].update(state="placed", provider_order=order)

    async def release_order(self, user_id: str, coid: str) -> None:
        self._check()
        self.orders.pop((user_id, coid), None)

    async def audit(
        self,
        actor: str,
        user_id: str | None,
        action: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._check()
        self.audits.append((actor, user_id, action, outcome, dict(detail or {})))

    async def open_revoke_job(self) -> tuple[RevokeJob, bool]:
        self._check()
        for job in self.jobs:
            if job.status == "running":
                return job, True
        job = RevokeJob(len(self.jobs) + 1, "running", "", 0, 0)
        self.jobs.append(job)
        return job, False

    async def advance_revoke_job(
        self, job_id: int, cursor: str, destroyed: int, failed: int
    ) -> None:
        job = self.jobs[job_id - 1]
        self.jobs[job_id - 1] = replace(
            job, cursor=cursor, destroyed=job.destroyed + destroyed, failed=job.failed + failed
        )

    async def finish_revoke_job(self, job_id: int) -> RevokeJob:
        self.jobs[job_id - 1] = replace(self.jobs[job_id - 1], status="done")
        return self.jobs[job_id - 1]

    async def revoke_job(self, job_id: int) -> RevokeJob | None:
        return self.jobs[job_id - 1]


class FakeVault:
    """The `VaultStore` surface: paths below the prefix -> data; `down` = OpenBao away."""

    def __init__(self) -> None:
        self.down = False
        self.data: dict[str, dict[str, Any]] = {"oauth-client": {"client_secret": "cs"}}

    def _check(self, op: str) -> None:
        if self.down:
            raise VaultUnavailable(op)

    async def ping(self) -> bool:
        return not self.down

    async def read_field(self, name: str, field_name: str) -> str | None:
        self._check("read")
        value = self.data.get(name, {}).get(field_name)
        return str(value) if value else None

    async def write_grant(
        self, grant_id: str, user_id: str, token: AccessToken, env: BrokerEnv, scope: str
    ) -> None:
        self._check("write")
        self.data[grant_path(grant_id)] = {
            "access_token": token.reveal(),
            "env": env,
            "scope": scope,
            "user_id": user_id,
            "grant_id": grant_id,
        }

    async def read_path(self, rel_path: str) -> StoredToken | None:
        self._check("read")
        got = self.data.get(rel_path)
        if not got:
            return None
        return StoredToken(
            got["user_id"], AccessToken(got["access_token"]), got["env"], got["scope"]
        )

    async def destroy_path(self, rel_path: str) -> None:
        self._check("destroy")
        self.data.pop(rel_path, None)

    async def list_dir(self, directory: str) -> list[str]:
        self._check("list")
        prefix = directory + "/"
        return sorted(k.removeprefix(prefix) for k in self.data if k.startswith(prefix))

    async def list_token_paths(self) -> list[str]:
        grants = [f"{GRANTS_DIR}/{k}" for k in await self.list_dir(GRANTS_DIR)]
        return sorted(grants + [f"{USERS_DIR}/{k}" for k in await self.list_dir(USERS_DIR)])

    def tokens(self) -> list[str]:
        return [v["access_token"] for v in self.data.values() if "access_token" in v]


class FakeOAuth:
    """Alpaca's OAuth: the authorize URL, an exchange issuing `tok-<n>`, revocation."""

    def __init__(self) -> None:
        self.issued = 0
        self.revoked: list[str] = []

    def authorize_url(
        self, redirect_uri: str, state: str, _verifier: str | None, env: BrokerEnv
    ) -> str:
        query = urlencode({"redirect_uri": redirect_uri, "state": state, "env": env})
        return f"{PROVIDER}/oauth/authorize?{query}"

    async def exchange(
        self, _code: str, _uri: str, _verifier: str | None, _secret: str
    ) -> IssuedToken:
        self.issued += 1
        return IssuedToken(AccessToken(f"tok-{self.issued}"), "trading")

    async def revoke(self, token: AccessToken, _secret: str | None) -> str:
        self.revoked.append(token.reveal())
        return "revoked"


class FakeTrading:
    async def account(self, _token: AccessToken, env: BrokerEnv) -> dict[str, Any]:
        return {"account_number": "PA1", "status": "ACTIVE", "cash": "1000", "env": env}


@dataclass
class Component:
    """The app, its fakes, and an API client on the ASGI transport."""

    app: FastAPI
    api: httpx.AsyncClient
    store: FakeStore
    vault: FakeVault
    oauth: FakeOAuth
    clock: ManualClock
    key: OKPKey
    broker: Any = None
    events: list[HandoffEvent] = field(default_factory=list)

    def auth(self, user: str, **claims: Any) -> dict[str, str]:
        now = int(time.time())
        body = {"iss": "raxx-identity", "aud": "raxx", "sub": user, "iat": now, "exp": now + 300}
        body.update(claims)
        return {"Authorization": f"Bearer {sign(self.key, body)}"}

    @property
    def metrics(self) -> Metrics:
        metrics: Metrics = self.app.state.service.metrics
        return metrics


def component_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redirect_uri": REDIRECT,
        "allowed_redirect_uris": [REDIRECT],
        "alpaca_oauth_url": PROVIDER,
        "alpaca_trading_url": PROVIDER,
        "cookie_secure": False,
        "admin_token_sha256": None,
    }
    values.update(overrides)
    return Settings(**values)
