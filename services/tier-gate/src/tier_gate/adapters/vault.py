"""OpenBao (KV v2) access through hvac, run in a worker thread (hvac is synchronous)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions

from tier_gate.errors import ConfigError, UnavailableError
from tier_gate.settings import VaultSettings

K8S_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class Vault:
    """A tiny KV v2 client: read a secret, create one only if absent."""

    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings
        self._client: hvac.Client | None = None

    def _login(self) -> hvac.Client:
        s = self._settings
        client = hvac.Client(url=s.addr, timeout=5)
        if s.auth == "token":
            if s.token is None:
                raise ConfigError("TG_VAULT__TOKEN is required with TG_VAULT__AUTH=token")
            client.token = s.token.get_secret_value()
        elif s.auth == "approle":
            if not s.role_id or s.secret_id is None:
                raise ConfigError("approle auth needs TG_VAULT__ROLE_ID and TG_VAULT__SECRET_ID")
            client.auth.approle.login(role_id=s.role_id, secret_id=s.secret_id.get_secret_value())
        else:
            if not s.role:
                raise ConfigError("kubernetes auth needs TG_VAULT__ROLE")
            client.auth.kubernetes.login(role=s.role, jwt=K8S_TOKEN.read_text().strip())
        return client

    def _client_or_login(self) -> hvac.Client:
        if self._client is None:
            self._client = self._login()
        return self._client

    def _read(self, path: str) -> dict[str, Any] | None:
        try:
            resp = self._client_or_login().secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._settings.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        except hvac.exceptions.VaultError as exc:
            raise UnavailableError(f"OpenBao read of {path} failed: {exc}") from exc
        data: dict[str, Any] = resp["data"]["data"]
        return data

    def _create(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write `data` unless the path exists (check-and-set 0); return what is stored."""
        try:
            self._client_or_login().secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, mount_point=self._settings.mount, cas=0
            )
        except hvac.exceptions.InvalidRequest:
            pass  # another writer won the race; fall through and read theirs
        except hvac.exceptions.VaultError as exc:
            raise UnavailableError(f"OpenBao write of {path} failed: {exc}") from exc
        stored = self._read(path)
        if stored is None:
            raise UnavailableError(f"OpenBao lost {path} right after writing it")
        return stored

    def _write(self, path: str, data: dict[str, Any]) -> None:
        try:
            self._client_or_login().secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, mount_point=self._settings.mount
            )
        except hvac.exceptions.VaultError as exc:
            raise UnavailableError(f"OpenBao write of {path} failed: {exc}") from exc

    async def read(self, path: str) -> dict[str, Any] | None:
        """The secret at `path`, or None when absent."""
        return await asyncio.to_thread(self._read, path)

    async def create_if_absent(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store `data` at `path` only if nothing is there; return what is stored (idempotent)."""
        return await asyncio.to_thread(self._create, path, data)

    async def write(self, path: str, data: dict[str, Any]) -> None:
        """Overwrite the secret at `path` (non-secret material derived from seeds)."""
        await asyncio.to_thread(self._write, path, data)

    async def ping(self) -> bool:
        """Whether OpenBao answers and is unsealed."""

        def _ping() -> bool:
            status: dict[str, Any] = self._client_or_login().sys.read_health_status(method="GET")
            return isinstance(status, dict) and not status.get("sealed", True)

        try:
            return await asyncio.to_thread(_ping)
        except Exception:
            return False
