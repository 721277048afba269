"""OpenBao/Vault KV v2: the Alpaca market-data key (hvac runs in a worker thread)."""

from __future__ import annotations

import asyncio
from typing import Any

import hvac
from pydantic import SecretStr

from eod_settler.adapters.alpaca import AlpacaCredentials
from eod_settler.errors import ConfigError, RetryableError
from eod_settler.settings import Settings


def _read(settings: Settings) -> AlpacaCredentials:
    v = settings.vault
    client = hvac.Client(url=v.addr, timeout=10)
    if v.auth == "token":
        client.token = v.token.get_secret_value() if v.token else None
    elif v.auth == "approle":
        client.auth.approle.login(
            role_id=v.role_id, secret_id=v.secret_id.get_secret_value() if v.secret_id else None
        )
    else:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/token") as fh:
            client.auth.kubernetes.login(role=v.role, jwt=fh.read())
    resp: dict[str, Any] = client.secrets.kv.v2.read_secret_version(
        path=v.path, mount_point=v.mount, raise_on_deleted_version=True
    )
    data = resp["data"]["data"]
    try:
        return AlpacaCredentials(SecretStr(data["key_id"]), SecretStr(data["secret_key"]))
    except KeyError as exc:
        raise ConfigError(f"vault secret {v.mount}/{v.path} lacks field {exc}") from exc


async def load_credentials(settings: Settings) -> AlpacaCredentials:
    """The Alpaca key: dev settings when given (dev only), else Vault. Re-read on every run."""
    if settings.alpaca_key_id and settings.alpaca_secret_key and settings.env == "dev":
        return AlpacaCredentials(settings.alpaca_key_id, settings.alpaca_secret_key)
    if not settings.vault.addr:
        raise ConfigError("no Alpaca key: set EOD_VAULT__ADDR (or, in dev, EOD_ALPACA_KEY_ID)")
    try:
        return await asyncio.to_thread(_read, settings)
    except ConfigError:
        raise
    except hvac.exceptions.Forbidden as exc:
        raise ConfigError("vault refused the settler's token") from exc
    except Exception as exc:
        raise RetryableError(f"vault read failed: {type(exc).__name__}") from exc
