"""`python -m broker_handoff init-vault`: policy, AppRole and broker-handoff's own secrets.

Idempotent: every step creates or updates to the same result, so running it twice is safe.
Runs with an operator's Vault token (`BH_VAULT__TOKEN`, or `VAULT_TOKEN`), never the service's.
The login and the KV writes are the kit's (`login`, `VaultKV`); the mount, policy and AppRole
administration has no kit counterpart and stays here (hvac, in a worker thread).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import hvac
from pydantic import SecretStr
from raxx_service_kit.vault import VaultKV, login

from broker_handoff.adapters.vault import ADMIN_PATH, OAUTH_CLIENT_PATH
from broker_handoff.domain import sha256_hex
from broker_handoff.settings import BrokerHandoffVault

POLICY_NAME = "broker-handoff"
ROLE_NAME = "broker-handoff"


def policy_text(mount: str, prefix: str) -> str:
    """The `broker-handoff` policy: full access below its own prefix, nothing else."""
    return f"""# broker-handoff: per-user broker tokens and its own secrets; nothing else.
path "{mount}/data/{prefix}/*" {{
  capabilities = ["create", "read", "update", "delete"]
}}
path "{mount}/metadata/{prefix}/*" {{
  capabilities = ["read", "list", "delete"]
}}
path "{mount}/destroy/{prefix}/*" {{
  capabilities = ["update"]
}}
"""


@dataclass(frozen=True)
class InitResult:
    """What init-vault did; `secret_id`/`admin_token` are set only when freshly generated."""

    policy: str
    role_id: str
    secret_id: str | None
    admin_token: str | None
    oauth_client_secret_written: bool


def _ensure_kv2(client: hvac.Client, mount: str) -> None:
    mounts = client.sys.list_mounted_secrets_engines()
    data = mounts.get("data", mounts)
    if f"{mount}/" not in data:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})


def _ensure_approle(client: hvac.Client, mount: str) -> None:
    methods = client.sys.list_auth_methods()
    data = methods.get("data", methods)
    if f"{mount}/" not in data:
        client.sys.enable_auth_method("approle", path=mount)


def _provision(
    client: hvac.Client, settings: BrokerHandoffVault, new_secret_id: bool
) -> tuple[str, str | None]:
    """Mount, policy and AppRole (blocking hvac calls); returns (role_id, new secret_id)."""
    mount, prefix = settings.mount, settings.prefix
    _ensure_kv2(client, mount)
    client.sys.create_or_update_policy(name=POLICY_NAME, policy=policy_text(mount, prefix))
    _ensure_approle(client, settings.approle_mount)
    client.auth.approle.create_or_update_approle(
        role_name=ROLE_NAME,
        token_policies=[POLICY_NAME],
        token_ttl="1h",  # noqa: S106 (a lifetime, not a secret)
        token_max_ttl="24h",  # noqa: S106 (a lifetime, not a secret)
        mount_point=settings.approle_mount,
    )
    role_id = client.auth.approle.read_role_id(
        role_name=ROLE_NAME, mount_point=settings.approle_mount
    )["data"]["role_id"]
    secret_id = None
    if new_secret_id:
        secret_id = client.auth.approle.generate_secret_id(
            role_name=ROLE_NAME, mount_point=settings.approle_mount
        )["data"]["secret_id"]
    return str(role_id), secret_id


async def init_vault(
    settings: BrokerHandoffVault,
    operator_token: str,
    *,
    addr: str | None = None,
    new_secret_id: bool = False,
    oauth_client_secret: str | None = None,
    rotate_admin_token: bool = False,
) -> InitResult:
    """Create/refresh the policy, the AppRole and (if absent) the admin token hash."""
    operator = settings.model_copy(
        update={"auth": "token", "token": SecretStr(operator_token), "addr": addr or settings.addr}
    )
    client = await asyncio.to_thread(login, operator)
    role_id, secret_id = await asyncio.to_thread(_provision, client, operator, new_secret_id)
    kv = VaultKV(operator, prefix=operator.prefix)

    written = False
    if oauth_client_secret:
        await kv.write(OAUTH_CLIENT_PATH, {"client_secret": oauth_client_secret})
        written = True

    admin_token = None
    if rotate_admin_token or not (await kv.read(ADMIN_PATH) or {}).get("token_sha256"):
        admin_token = secrets.token_urlsafe(32)
        await kv.write(ADMIN_PATH, {"token_sha256": sha256_hex(admin_token)})
    return InitResult(POLICY_NAME, role_id, secret_id, admin_token, written)
