"""OpenBao/Vault KV v2: the Alpaca market-data key, through the kit's `VaultKV` (login,
re-login on `Forbidden`, threads, typed errors). The secret layout stays here: one secret at
`EOD_VAULT__PATH` with fields `key_id` and `secret_key`."""

from __future__ import annotations

from pydantic import SecretStr
from raxx_service_kit.vault import VaultKV

from eod_settler.adapters.alpaca import AlpacaCredentials
from eod_settler.errors import ConfigError
from eod_settler.settings import Settings


class CredentialSource:
    """Reads the Alpaca key on every run (a rotated key is picked up without a restart)."""

    def __init__(self, settings: Settings, kv: VaultKV | None = None) -> None:
        self._settings = settings
        self._kv = kv

    @property
    def kv(self) -> VaultKV:
        """The KV client (built on first use: a dev key needs no OpenBao)."""
        if self._kv is None:
            self._kv = VaultKV(self._settings.vault)
        return self._kv

    async def __call__(self) -> AlpacaCredentials:
        """The Alpaca key: dev settings when given (dev only), else OpenBao.

        OpenBao down or sealed -> `VaultUnavailable` (retryable); denied -> `VaultDenied`
        (a `ConfigError`); absent or incomplete secret -> `ConfigError`."""
        s = self._settings
        if s.alpaca_key_id and s.alpaca_secret_key and s.env == "dev":
            return AlpacaCredentials(s.alpaca_key_id, s.alpaca_secret_key)
        where = f"{s.vault.mount}/{s.vault.path}"
        data = await self.kv.read(s.vault.path)
        if data is None:
            raise ConfigError(
                f"no Alpaca key in OpenBao at {where} (or, in dev, EOD_ALPACA_KEY_ID)"
            )
        try:
            return AlpacaCredentials(SecretStr(data["key_id"]), SecretStr(data["secret_key"]))
        except KeyError as exc:
            raise ConfigError(f"OpenBao secret {where} lacks field {exc}") from None
