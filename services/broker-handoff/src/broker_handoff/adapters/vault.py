"""Vault/OpenBao KV v2: the only place an access token is ever stored.

hvac is synchronous, so every call runs in a worker thread. Vendor exceptions become
:class:`VaultUnavailable` here; their text is never passed on (it could echo a request).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import hvac
import requests
from hvac import exceptions as hvac_exc

from broker_handoff.domain import AccessToken, BrokerEnv
from broker_handoff.errors import ConfigError, VaultUnavailable
from broker_handoff.settings import VaultSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

OAUTH_CLIENT_PATH = "oauth-client"
ADMIN_PATH = "admin"
USERS_DIR = "users"
"""Before per-grant paths, one secret per user: `users/<vault_key(user_id)>` (read and revoked)."""
GRANTS_DIR = "grants"
"""Every token is written once, to its own path `grants/<grant_id>` (never overwritten)."""


def grant_path(grant_id: str) -> str:
    """The path (below the prefix) of one grant."""
    return f"{GRANTS_DIR}/{grant_id}"


def record_path(vault_key_column: str) -> str:
    """The path a connection record points at (legacy records hold a bare per-user hash)."""
    return vault_key_column if "/" in vault_key_column else f"{USERS_DIR}/{vault_key_column}"


@dataclass(frozen=True)
class StoredToken:
    """A user's token as read back from Vault."""

    user_id: str
    token: AccessToken
    env: BrokerEnv
    scope: str
    grant_id: str = ""


def make_client(settings: VaultSettings) -> hvac.Client:
    """An authenticated hvac client (token, AppRole or Kubernetes auth)."""
    client = hvac.Client(url=settings.addr, timeout=settings.timeout_seconds)
    if settings.auth == "token":
        if settings.token is None:
            raise ConfigError("BH_VAULT__TOKEN is required with BH_VAULT__AUTH=token")
        client.token = settings.token.get_secret_value()
    elif settings.auth == "approle":
        if not settings.role_id or settings.secret_id is None:
            raise ConfigError("BH_VAULT__ROLE_ID and BH_VAULT__SECRET_ID are required for approle")
        client.auth.approle.login(
            role_id=settings.role_id,
            secret_id=settings.secret_id.get_secret_value(),
            mount_point=settings.approle_mount,
        )
    else:
        jwt = Path(settings.kubernetes_jwt_path).read_text().strip()
        client.auth.kubernetes.login(settings.role, jwt, mount_point=settings.kubernetes_mount)
    return client


class VaultStore:
    """Per-user tokens and broker-handoff's own secrets, below `settings.prefix` in KV v2."""

    def __init__(
        self,
        settings: VaultSettings,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client: hvac.Client | None = None
        self._lock = threading.Lock()
        self._on_error = on_error or (lambda _op: None)

    # -- plumbing ---------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join((self._settings.prefix, *parts))

    def _authed(self, relogin: bool = False) -> hvac.Client:
        with self._lock:
            if self._client is None or relogin:
                self._client = make_client(self._settings)
            return self._client

    def _call_sync(self, op: str, fn: Callable[[hvac.Client], T]) -> T:
        try:
            try:
                return fn(self._authed())
            except hvac_exc.Forbidden:
                if self._settings.auth == "token":
                    raise
                # A lease-bound login token may have expired: log in again once.
                return fn(self._authed(relogin=True))
        except ConfigError:
            raise
        except (hvac_exc.VaultError, requests.RequestException, OSError) as exc:
            self._on_error(op)
            log.warning("vault %s failed: %s", op, type(exc).__name__)
            raise VaultUnavailable(
                "The secret store is unavailable; nothing was changed. Try again shortly."
            ) from None

    async def _call(self, op: str, fn: Callable[[hvac.Client], T]) -> T:
        return await asyncio.to_thread(self._call_sync, op, fn)

    def _read_sync(self, client: hvac.Client, path: str) -> dict[str, Any] | None:
        try:
            resp = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._settings.mount, raise_on_deleted_version=False
            )
        except hvac_exc.InvalidPath:
            return None
        data = (resp or {}).get("data") or {}
        payload = data.get("data")
        return dict(payload) if payload else None

    # -- broker-handoff's own secrets -------------------------------------------------------
    async def ping(self) -> bool:
        """Whether Vault answers and our login works (for /readyz)."""

        def fn(client: hvac.Client) -> bool:
            return bool(client.is_authenticated())

        try:
            return await self._call("health", fn)
        except VaultUnavailable:
            return False

    async def read_field(self, name: str, field: str) -> str | None:
        """A field of one of broker-handoff's own secrets (`oauth-client`, `admin`)."""
        data = await self._call("read", lambda c: self._read_sync(c, self._path(name)))
        value = (data or {}).get(field)
        return str(value) if value else None

    # -- per-user tokens (grants) -----------------------------------------------------------
    async def write_grant(
        self, grant_id: str, user_id: str, token: AccessToken, env: BrokerEnv, scope: str
    ) -> None:
        """Store a newly issued token at its own grant path."""
        secret = {
            "access_token": token.reveal(),
            "env": env,
            "scope": scope,
            "user_id": user_id,
            "grant_id": grant_id,
        }
        path = self._path(grant_path(grant_id))
        await self._call(
            "write",
            lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=path, secret=secret, mount_point=self._settings.mount
            ),
        )

    async def read_path(self, rel_path: str) -> StoredToken | None:
        """The token stored at a path below the prefix, or None when none is stored."""
        path = self._path(rel_path)
        data = await self._call("read", lambda c: self._read_sync(c, path))
        if not data or not data.get("access_token"):
            return None
        env: BrokerEnv = "live" if data.get("env") == "live" else "paper"
        return StoredToken(
            user_id=str(data.get("user_id", "")),
            token=AccessToken(str(data["access_token"])),
            env=env,
            scope=str(data.get("scope", "")),
            grant_id=str(data.get("grant_id", "")),
        )

    async def destroy_path(self, rel_path: str) -> None:
        """Destroy every version stored at a path below the prefix; absent is fine."""
        path = self._path(rel_path)

        def fn(client: hvac.Client) -> None:
            try:
                client.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=path, mount_point=self._settings.mount
                )
            except hvac_exc.InvalidPath:
                return

        await self._call("destroy", fn)

    async def list_dir(self, directory: str) -> list[str]:
        """The secrets (not folders) directly below `directory` (sorted names)."""
        path = self._path(directory)

        def fn(client: hvac.Client) -> list[str]:
            try:
                resp = client.secrets.kv.v2.list_secrets(
                    path=path, mount_point=self._settings.mount
                )
            except hvac_exc.InvalidPath:
                return []
            keys = (resp or {}).get("data", {}).get("keys", [])
            return sorted(str(k) for k in keys if not str(k).endswith("/"))

        return await self._call("list", fn)

    async def list_token_paths(self) -> list[str]:
        """Every path (below the prefix) that holds a user token, grants and legacy, sorted."""
        grants = [grant_path(k) for k in await self.list_dir(GRANTS_DIR)]
        legacy = [f"{USERS_DIR}/{k}" for k in await self.list_dir(USERS_DIR)]
        return sorted(grants + legacy)
