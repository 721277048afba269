"""`python -m broker_handoff init-vault`: policy, AppRole and broker-handoff's own secrets.

Idempotent: every step creates or updates to the same result, so running it twice is safe.
Runs with an operator's Vault token (`BH_VAULT__TOKEN`, or `VAULT_TOKEN`), never the service's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import hvac
from hvac import exceptions as hvac_exc

from broker_handoff.domain import sha256_hex
from broker_handoff.settings import VaultSettings

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


def _read(client: hvac.Client, mount: str, path: str) -> dict[str, str]:
    try:
        resp = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=False
        )
    except hvac_exc.InvalidPath:
        return {}
    return dict(((resp or {}).get("data") or {}).get("data") or {})


def init_vault(
    client: hvac.Client,
    settings: VaultSettings,
    *,
    new_secret_id: bool = False,
    oauth_client_secret: str | None = None,
    rotate_admin_token: bool = False,
) -> InitResult:
    """Create/refresh the policy, the AppRole and (if absent) the admin token hash."""
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

    written = False
    if oauth_client_secret:
        client.secrets.kv.v2.create_or_update_secret(
            path=f"{prefix}/oauth-client",
            secret={"client_secret": oauth_client_secret},
            mount_point=mount,
        )
        written = True

    admin_token = None
    if rotate_admin_token or not _read(client, mount, f"{prefix}/admin").get("token_sha256"):
        admin_token = secrets.token_urlsafe(32)
        client.secrets.kv.v2.create_or_update_secret(
            path=f"{prefix}/admin",
            secret={"token_sha256": sha256_hex(admin_token)},
            mount_point=mount,
        )
    return InitResult(POLICY_NAME, str(role_id), secret_id, admin_token, written)
