"""Vault/OpenBao KV v2: the only place an access token is ever stored.

The plumbing (login, threads, re-login on `Forbidden`, error mapping) is the kit's `VaultKV`;
this module keeps broker-handoff's secret *layout*: which path below the prefix holds what.
The kit raises `VaultUnavailable` (503, retryable) and never passes hvac's text on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raxx_service_kit.vault import VaultKV

from broker_handoff.domain import AccessToken, BrokerEnv
from broker_handoff.settings import BrokerHandoffVault

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


class VaultStore:
    """Per-user tokens and broker-handoff's own secrets, below `settings.prefix` in KV v2."""

    def __init__(
        self,
        settings: BrokerHandoffVault,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.kv = VaultKV(settings, prefix=settings.prefix, on_error=on_error)

    # -- broker-handoff's own secrets -------------------------------------------------------
    async def ping(self) -> bool:
        """Whether Vault answers and our login works (for /readyz)."""
        return await self.kv.ping()

    async def read_field(self, name: str, field: str) -> str | None:
        """A field of one of broker-handoff's own secrets (`oauth-client`, `admin`)."""
        value = (await self.kv.read(name) or {}).get(field)
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
        await self.kv.write(grant_path(grant_id), secret)

    async def read_path(self, rel_path: str) -> StoredToken | None:
        """The token stored at a path below the prefix, or None when none is stored."""
        data = await self.kv.read(rel_path)
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
        await self.kv.destroy(rel_path)

    async def list_dir(self, directory: str) -> list[str]:
        """The secrets (not folders) directly below `directory` (sorted names)."""
        return [k for k in await self.kv.list(directory) if not k.endswith("/")]

    async def list_token_paths(self) -> list[str]:
        """Every path (below the prefix) that holds a user token, grants and legacy, sorted."""
        grants = [grant_path(k) for k in await self.list_dir(GRANTS_DIR)]
        legacy = [f"{USERS_DIR}/{k}" for k in await self.list_dir(USERS_DIR)]
        return sorted(grants + legacy)
