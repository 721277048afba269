"""The hub's secrets in Vault/OpenBao KV v2, read through the kit's `VaultKV` (login, re-login
on `Forbidden`, threads, typed errors). Only the layout is the hub's:

- `MDH_VAULT__MOUNT`/`MDH_VAULT__PATH` (`raxx/alpaca/market-data`): the Alpaca key, fields
  `key_id` and `secret_key`; re-read every `MDH_VAULT__POLL_SECONDS` to catch a rotation.
- `MDH_VAULT__MOUNT`/`MDH_VAULT__SERVICE_CLIENTS_PATH`: client id -> sha256 hex of its secret
  (who may use the `/alpaca` passthrough); missing = nobody.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pydantic import SecretStr
from raxx_service_kit.errors import ConfigError
from raxx_service_kit.vault import VaultKV

from market_data_hub.aio import raise_if_cancelling
from market_data_hub.settings import VaultSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlpacaKey:
    """Key id and secret; `version` is the KV v2 version it came from. Never logged."""

    key_id: str
    secret_key: SecretStr
    version: int

    def __repr__(self) -> str:
        return f"AlpacaKey(version={self.version})"


class KeySource:
    """Reads the key at start and keeps it fresh; `changed` fires when a new version lands."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.key: AlpacaKey | None = None
        self.changed = asyncio.Event()
        self._kv = VaultKV(settings)

    async def _read(self) -> AlpacaKey:
        s = self.settings
        got = await self._kv.read_version(s.path)
        if got is None:
            raise ConfigError(f"no Alpaca key at {s.mount}/{s.path}")
        try:
            return AlpacaKey(got.data["key_id"], SecretStr(got.data["secret_key"]), got.version)
        except KeyError as exc:
            raise ConfigError(f"secret {s.mount}/{s.path} lacks field {exc}") from None

    def close(self) -> None:
        """Nothing to close (the kit's client holds no socket between calls)."""

    async def load(self) -> AlpacaKey:
        """Read the key once (at start); ConfigError when it is missing or unreadable."""
        try:
            key = await self._read()
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
                key = await self._read()
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
        self._kv = VaultKV(settings)

    async def _read(self) -> tuple[dict[str, str], int]:
        got = await self._kv.read_version(self.settings.service_clients_path)
        if got is None:
            return {}, 0
        clients = {str(k): str(v) for k, v in got.data.items() if isinstance(v, str)}
        return clients, got.version

    async def refresh(self) -> None:
        """Re-read the map once; on failure keep the current one (logged, no secrets)."""
        try:
            clients, version = await self._read()
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
        """Nothing to close (the kit's client holds no socket between calls)."""
