"""The Alpaca market-data key from Vault/OpenBao KV v2; re-read on a timer to catch rotation."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import hvac
from pydantic import SecretStr

from market_data_hub.aio import raise_if_cancelling
from market_data_hub.errors import ConfigError
from market_data_hub.settings import VaultSettings

log = logging.getLogger(__name__)
K8S_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class AlpacaKey:
    """Key id and secret; `version` is the KV v2 version it came from. Never logged."""

    key_id: str
    secret_key: SecretStr
    version: int

    def __repr__(self) -> str:
        return f"AlpacaKey(version={self.version})"


def login(s: VaultSettings) -> hvac.Client:
    """A logged-in hvac client (token, AppRole or Kubernetes auth)."""
    client = hvac.Client(url=s.addr, timeout=5)
    if s.auth == "token":
        if s.token is None:
            raise ConfigError("MDH_VAULT__TOKEN is required with MDH_VAULT__AUTH=token")
        client.token = s.token.get_secret_value()
    elif s.auth == "approle":
        if not s.role_id or s.secret_id is None:
            raise ConfigError("MDH_VAULT__ROLE_ID and MDH_VAULT__SECRET_ID are required")
        client.auth.approle.login(role_id=s.role_id, secret_id=s.secret_id.get_secret_value())
    else:
        if not s.role:
            raise ConfigError("MDH_VAULT__ROLE is required with MDH_VAULT__AUTH=kubernetes")
        client.auth.kubernetes.login(s.role, K8S_TOKEN.read_text())
    return client


class KeySource:
    """Reads the key at start and keeps it fresh; `changed` fires when a new version lands."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.key: AlpacaKey | None = None
        self.changed = asyncio.Event()
        self._client: hvac.Client | None = None

    def _login(self) -> hvac.Client:
        return login(self.settings)

    def _read(self) -> AlpacaKey:
        if self._client is None:
            self._client = self._login()
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=self.settings.path,
                mount_point=self.settings.mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.Forbidden:
            self._client = None  # token expired or revoked: log in again next time
            raise
        data = resp["data"]["data"]
        version = int(resp["data"]["metadata"]["version"])
        try:
            return AlpacaKey(data["key_id"], SecretStr(data["secret_key"]), version)
        except KeyError as exc:
            raise ConfigError(
                f"secret {self.settings.mount}/{self.settings.path} lacks field {exc}"
            ) from None

    def close(self) -> None:
        """Close the Vault HTTP session."""
        if self._client is not None:
            self._client.adapter.close()
            self._client = None

    async def load(self) -> AlpacaKey:
        """Read the key once (at start); ConfigError when it is missing or unreadable."""
        try:
            key = await asyncio.to_thread(self._read)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cannot read the Alpaca key from {self.settings.mount}/{self.settings.path} at "
                f"{self.settings.addr}: {type(exc).__name__}"
            ) from None
        self.key = key
        log.info("alpaca key loaded from vault (version %d)", key.version)
        return key

    async def watch(self) -> None:
        """Re-read every `poll_seconds`; on a new version swap the key and fire `changed`."""
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                key = await asyncio.to_thread(self._read)
            except Exception as exc:
                raise_if_cancelling()
                log.warning(
                    "vault re-read failed (%s); keeping the current key", type(exc).__name__
                )
                continue
            if self.key is None or key.version != self.key.version:
                log.info("alpaca key rotated to version %d; reconnecting", key.version)
                self.key = key
                self.changed.set()


class ServiceClients:
    """Hub service clients (client id -> sha256 hex of the secret) from Vault, kept fresh.

    A missing secret is not fatal: then no client is accepted (the passthrough answers 401).
    """

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.clients: dict[str, str] = {}
        self.version = 0
        self._client: hvac.Client | None = None

    def _read(self) -> tuple[dict[str, str], int]:
        if self._client is None:
            self._client = login(self.settings)
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=self.settings.service_clients_path,
                mount_point=self.settings.mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            return {}, 0
        except hvac.exceptions.Forbidden:
            self._client = None
            raise
        data = resp["data"]["data"] or {}
        clients = {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
        return clients, int(resp["data"]["metadata"]["version"])

    async def refresh(self) -> None:
        """Re-read the map once; on failure keep the current one (logged, no secrets)."""
        try:
            clients, version = await asyncio.to_thread(self._read)
        except Exception as exc:
            raise_if_cancelling()
            log.warning("service-clients read failed (%s); keeping the current map",
                        type(exc).__name__)  # fmt: skip
            return
        if version != self.version:
            log.info("service clients loaded (version %d, %d clients)", version, len(clients))
        self.clients, self.version = clients, version

    async def watch(self) -> None:
        """Re-read every `poll_seconds` (the Alpaca key's schedule)."""
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.settings.poll_seconds)
            await self.refresh()

    def close(self) -> None:
        """Close the Vault HTTP session."""
        if self._client is not None:
            self._client.adapter.close()
            self._client = None
