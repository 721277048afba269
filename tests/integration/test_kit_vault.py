"""raxx_service_kit.vault against a real OpenBao: KV operations, re-login, error mapping."""

from __future__ import annotations

import uuid

import hvac
import pytest
from pydantic import SecretStr
from raxx_service_kit.errors import ConfigError
from raxx_service_kit.vault import VaultDenied, VaultKV, VaultSettings, VaultUnavailable

from tests.integration.fixtures.servers import Vault

pytestmark = pytest.mark.integration


def root(vault: Vault) -> VaultSettings:
    return VaultSettings(addr=vault.addr, token=SecretStr(vault.token), timeout_seconds=2)


async def test_kv_read_write_versions_cas_list_destroy(vault: Vault) -> None:
    errors: list[str] = []
    kv = VaultKV(root(vault), prefix=f"kit/{uuid.uuid4().hex}", on_error=errors.append)
    assert await kv.ping()
    assert await kv.read("a") is None
    assert await kv.create_if_absent("a", {"k": "1"})
    assert not await kv.create_if_absent("a", {"k": "2"})  # cas=0: the first write wins
    assert await kv.write("a", {"k": "3"}) == 2
    got = await kv.read_version("a")
    assert got is not None
    assert (got.data, got.version) == ({"k": "3"}, 2)
    first = await kv.read_version("a", version=1)
    assert first is not None
    assert first.data == {"k": "1"}
    await kv.write("dir/b", {"x": 1})
    assert await kv.list("") == ["a", "dir/"]
    assert await kv.list("dir") == ["b"]
    assert await kv.list("nothing") == []
    await kv.destroy("a")
    await kv.destroy("a")  # absent is fine
    assert await kv.read("a") is None
    assert errors == []


async def test_unreachable_is_retryable_and_never_leaks_text() -> None:
    settings = VaultSettings(addr="http://127.0.0.1:9", token=SecretStr("t"), timeout_seconds=1)
    errors: list[str] = []
    kv = VaultKV(settings, on_error=errors.append)
    with pytest.raises(VaultUnavailable) as info:
        await kv.read("x")
    assert info.value.status == 503
    assert info.value.retry_after
    assert "127.0.0.1" not in info.value.message
    assert errors == ["read"]
    assert not await kv.ping()


async def test_static_token_denied_is_a_config_error(vault: Vault) -> None:
    admin = hvac.Client(url=vault.addr, token=vault.token)
    admin.sys.create_or_update_policy(
        "kit-none", 'path "secret/data/nowhere" { capabilities = ["read"] }'
    )
    token = admin.auth.token.create(policies=["kit-none"], ttl="1h")["auth"]["client_token"]
    kv = VaultKV(VaultSettings(addr=vault.addr, token=SecretStr(token)))
    with pytest.raises(VaultDenied):
        await kv.read("kit/forbidden")
    with pytest.raises(ConfigError):
        await VaultKV(VaultSettings(addr=vault.addr)).read("x")


async def test_approle_logs_in_again_once_when_its_token_is_revoked(vault: Vault) -> None:
    admin = hvac.Client(url=vault.addr, token=vault.token)
    if "approle/" not in admin.sys.list_auth_methods()["data"]:
        admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy(
        "kit-rw", 'path "secret/data/kit/*" { capabilities = ["create", "read", "update"] }'
    )
    admin.auth.approle.create_or_update_approle("kit", token_policies=["kit-rw"], token_ttl="1h")
    role_id = admin.auth.approle.read_role_id("kit")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("kit")["data"]["secret_id"]
    settings = VaultSettings(
        addr=vault.addr, auth="approle", role_id=role_id, secret_id=SecretStr(secret_id)
    )
    kv = VaultKV(settings, prefix="kit")
    path = uuid.uuid4().hex
    await kv.write(path, {"v": "1"})
    first_token = kv._client.token if kv._client else None
    admin.auth.token.revoke(first_token)  # the lease-bound token dies under the client
    assert await kv.read(path) == {"v": "1"}  # Forbidden -> one fresh login -> answered
    assert kv._client is not None
    assert kv._client.token != first_token
