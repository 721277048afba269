"""Vault/OpenBao: one settings model, one login, one threaded KV v2 client.

hvac is synchronous, so every call runs in a worker thread (`asyncio.to_thread`). A `Forbidden`
answer makes the client log in again once (a lease-bound AppRole/Kubernetes token may have
expired) before the call is retried; with a static token it is final. Errors leave as kit
errors and never carry hvac's text (it can echo a request):

- unreachable, timing out, sealed, 5xx      -> `VaultUnavailable` (a `RetryableError`, 503)
- denied after a fresh login                -> `VaultDenied` (a `ConfigError`: the policy is wrong)
- a refused request (bad path, cas mismatch) -> `PermanentError`

Secret *layouts* (which path holds what) stay in each service's `adapters/vault.py`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
import requests
from hvac import exceptions as hvac_exc
from pydantic import BaseModel, Field, SecretStr

from raxx_service_kit.errors import ConfigError, PermanentError, RetryableError

log = logging.getLogger(__name__)
T = TypeVar("T")
K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class VaultSettings(BaseModel):
    """How to reach OpenBao/Vault (`<PREFIX>_VAULT__ADDR`, `<PREFIX>_VAULT__AUTH`, ...).

    Never the secrets a service reads: those are fetched at start into the service's models.
    Subclass to add a service's own paths (`path`, `prefix`, ...).
    """

    addr: str = "http://127.0.0.1:18200"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: SecretStr | None = None
    role_id: str | None = None
    secret_id: SecretStr | None = None
    role: str | None = None
    """Kubernetes auth role."""
    kubernetes_jwt_path: str = K8S_TOKEN_PATH
    approle_mount: str = "approle"
    kubernetes_mount: str = "kubernetes"
    mount: str = "secret"
    """The KV v2 mount."""
    timeout_seconds: float = Field(default=5.0, gt=0)


class VaultUnavailable(RetryableError):
    """OpenBao did not answer (down, sealed, timing out); nothing was changed."""

    code = "vault_unavailable"

    def __init__(self, op: str = "call") -> None:
        super().__init__("the secret store is unavailable; retry later", 2.0, log_detail=op)


class VaultDenied(ConfigError):
    """OpenBao refused this identity even after a fresh login: its policy or login is wrong."""

    code = "vault_denied"


@dataclass(frozen=True)
class Versioned:
    """A KV v2 secret's data and the version it came from."""

    data: dict[str, Any]
    version: int


def login(settings: VaultSettings) -> hvac.Client:
    """A logged-in hvac client (token, AppRole or Kubernetes auth); blocking, run it in a thread."""
    client = hvac.Client(url=settings.addr, timeout=settings.timeout_seconds)
    if settings.auth == "token":
        if settings.token is None or not settings.token.get_secret_value():
            raise ConfigError("VAULT__TOKEN is required with VAULT__AUTH=token")
        client.token = settings.token.get_secret_value()
    elif settings.auth == "approle":
        if not settings.role_id or settings.secret_id is None:
            raise ConfigError("VAULT__ROLE_ID and VAULT__SECRET_ID are required for approle")
        client.auth.approle.login(
            role_id=settings.role_id,
            secret_id=settings.secret_id.get_secret_value(),
            mount_point=settings.approle_mount,
        )
    else:
        if not settings.role:
            raise ConfigError("VAULT__ROLE is required with VAULT__AUTH=kubernetes")
        jwt = Path(settings.kubernetes_jwt_path).read_text().strip()
        client.auth.kubernetes.login(settings.role, jwt, mount_point=settings.kubernetes_mount)
    return client


class VaultKV:
    """Async KV v2 client below an optional path `prefix`; one login shared by its calls."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        prefix: str = "",
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """`on_error(op)` is called when OpenBao is unavailable or denies (an error counter)."""
        self.settings = settings
        self.prefix = prefix.strip("/")
        self._client: hvac.Client | None = None
        self._lock = threading.Lock()
        self._on_error = on_error or (lambda _op: None)

    def path(self, rel: str) -> str:
        """The full path (below the mount) of `rel`."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # -- plumbing ----------------------------------------------------------------------------

    def _authed(self, relogin: bool = False) -> hvac.Client:
        with self._lock:
            if self._client is None or relogin:
                self._client = login(self.settings)
            return self._client

    def _call_sync(self, op: str, fn: Callable[[hvac.Client], T]) -> T:
        try:
            try:
                return fn(self._authed())
            except hvac_exc.Forbidden:
                if self.settings.auth == "token":
                    raise
                log.info("vault %s: forbidden, logging in again once", op)
                return fn(self._authed(relogin=True))
        except ConfigError:
            raise
        except hvac_exc.Forbidden:
            self._on_error(op)
            raise VaultDenied(f"OpenBao denied {op}: check this service's policy") from None
        except (hvac_exc.InvalidRequest, hvac_exc.UnsupportedOperation) as exc:
            raise PermanentError(f"OpenBao refused {op}", log_detail=type(exc).__name__) from None
        except (hvac_exc.VaultError, requests.RequestException, OSError) as exc:
            self._on_error(op)
            log.warning("vault %s failed: %s", op, type(exc).__name__)
            raise VaultUnavailable(op) from None

    async def _call(self, op: str, fn: Callable[[hvac.Client], T]) -> T:
        return await asyncio.to_thread(self._call_sync, op, fn)

    # -- operations --------------------------------------------------------------------------

    async def ping(self) -> bool:
        """Whether OpenBao answers, is unsealed and our login works (for `/readyz`)."""
        try:
            return await self._call("ping", lambda c: bool(c.is_authenticated()))
        except (VaultUnavailable, VaultDenied, PermanentError):
            return False

    async def read_version(self, rel: str, version: int | None = None) -> Versioned | None:
        """The data and version at `rel` (latest, or `version`); None if absent or deleted."""
        path = self.path(rel)

        def fn(c: hvac.Client) -> Versioned | None:
            try:
                resp = c.secrets.kv.v2.read_secret_version(
                    path=path,
                    version=version,
                    mount_point=self.settings.mount,
                    raise_on_deleted_version=False,
                )
            except hvac_exc.InvalidPath:
                return None
            data = (resp or {}).get("data") or {}
            if not data.get("data"):
                return None
            return Versioned(dict(data["data"]), int(data["metadata"]["version"]))

        return await self._call("read", fn)

    async def read(self, rel: str) -> dict[str, Any] | None:
        """The latest data at `rel`, or None."""
        got = await self.read_version(rel)
        return got.data if got else None

    async def write(self, rel: str, data: Mapping[str, Any], *, cas: int | None = None) -> int:
        """Write a new version (check-and-set when `cas` is given); returns its version."""
        path = self.path(rel)

        def fn(c: hvac.Client) -> int:
            resp = c.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(data), cas=cas, mount_point=self.settings.mount
            )
            return int(resp["data"]["version"])

        return await self._call("write", fn)

    async def create_if_absent(self, rel: str, data: Mapping[str, Any]) -> bool:
        """Write `data` only if nothing is stored at `rel` (cas=0); False when it exists."""
        try:
            await self.write(rel, data, cas=0)
        except PermanentError:
            if await self.read_version(rel) is not None:
                return False
            raise
        return True

    async def list(self, rel: str) -> list[str]:
        """Names directly below `rel` (folders end with `/`), sorted; [] if none."""
        path = self.path(rel)

        def fn(c: hvac.Client) -> list[str]:
            try:
                resp = c.secrets.kv.v2.list_secrets(path=path, mount_point=self.settings.mount)
            except hvac_exc.InvalidPath:
                return []
            return sorted(str(k) for k in (resp or {}).get("data", {}).get("keys", []))

        return await self._call("list", fn)

    async def destroy(self, rel: str) -> None:
        """Destroy every version and the metadata at `rel`; absent is fine."""
        path = self.path(rel)

        def fn(c: hvac.Client) -> None:
            try:
                c.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=path, mount_point=self.settings.mount
                )
            except hvac_exc.InvalidPath:
                return

        await self._call("destroy", fn)
