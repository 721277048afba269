"""broker-handoff and Vault: init-vault, the least-privilege policy, mass revocation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import hvac
import pytest
from broker_handoff.settings import BrokerHandoffVault
from hvac import exceptions as hvac_exc

from tests.integration import test_broker_handoff_flow as flow
from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.integration.test_broker_handoff_flow import (
    ADMIN_TOKEN,
    Harness,
    make_settings,
    new_user,
    open_harness,
)

pytestmark = pytest.mark.integration

# The shared harness fixtures live in the flow module.
bh = flow.bh
identity_key = flow.identity_key


def run_init_vault(vault: Vault, *args: str, stdin: str = "") -> dict[str, str]:
    env = {
        **os.environ,
        "BH_VAULT__ADDR": vault.addr,
        "BH_VAULT__TOKEN": vault.token,
    }
    out = subprocess.run(
        [sys.executable, "-m", "broker_handoff", "init-vault", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def provisioned(vault: Vault) -> dict[str, str]:
    """init-vault run twice against the shared OpenBao; the second run must change nothing."""
    first = run_init_vault(
        vault, "--secret-id", "--oauth-client-secret-stdin", stdin="sim-client-secret\n"
    )
    second = run_init_vault(vault)
    assert second["role_id"] == first["role_id"]
    assert second["policy"] == "broker-handoff"
    assert "admin_token" not in second  # kept, not rotated
    assert "secret_id" not in second
    return first


def test_init_vault_is_idempotent_and_creates_policy_and_approle(
    provisioned: dict[str, str], vault: Vault
) -> None:
    assert provisioned["policy"] == "broker-handoff"
    assert provisioned["oauth_client_secret"] == "written"
    root = hvac.Client(url=vault.addr, token=vault.token)
    # Only the hash is stored (the token itself was printed once, by whichever run made it).
    admin = root.secrets.kv.v2.read_secret_version(
        path="raxx/broker-handoff/admin", mount_point="secret", raise_on_deleted_version=False
    )["data"]["data"]
    assert len(admin["token_sha256"]) == 64
    if "admin_token" in provisioned:
        assert provisioned["admin_token"] not in str(admin)
    policy = root.sys.read_policy("broker-handoff")["data"]["rules"]
    assert 'path "secret/data/raxx/broker-handoff/*"' in policy
    assert 'path "secret/metadata/raxx/broker-handoff/*"' in policy
    assert 'path "secret/destroy/raxx/broker-handoff/*"' in policy


def test_only_the_broker_handoff_role_can_read_its_paths(
    provisioned: dict[str, str], vault: Vault
) -> None:
    root = hvac.Client(url=vault.addr, token=vault.token)
    path = "raxx/broker-handoff/users/policy-probe"
    root.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"access_token": "probe"}, mount_point="secret"
    )
    service = hvac.Client(url=vault.addr)
    service.auth.approle.login(role_id=provisioned["role_id"], secret_id=provisioned["secret_id"])
    read = service.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=False
    )
    assert read["data"]["data"]["access_token"] == "probe"
    client_secret = service.secrets.kv.v2.read_secret_version(
        path="raxx/broker-handoff/oauth-client",
        mount_point="secret",
        raise_on_deleted_version=False,
    )
    assert client_secret["data"]["data"]["client_secret"] == "sim-client-secret"
    # broker-handoff's token cannot reach anything else (e.g. the market-data key).
    with pytest.raises(hvac_exc.Forbidden):
        service.secrets.kv.v2.read_secret_version(
            path="raxx/alpaca/market-data", mount_point="secret", raise_on_deleted_version=False
        )
    # Another token without the policy is refused on broker-handoff's paths.
    other_token = root.auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"]
    other = hvac.Client(url=vault.addr, token=other_token)
    for probe in (path, "raxx/broker-handoff/oauth-client", "raxx/broker-handoff/admin"):
        with pytest.raises(hvac_exc.Forbidden):
            other.secrets.kv.v2.read_secret_version(
                path=probe, mount_point="secret", raise_on_deleted_version=False
            )
    with pytest.raises(hvac_exc.Forbidden):
        other.secrets.kv.v2.list_secrets(path="raxx/broker-handoff/users", mount_point="secret")
    root.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")


async def test_the_service_runs_with_its_approle_and_default_paths(
    provisioned: dict[str, str],
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    vault: Vault,
    postgres_dsn: str,
    nats_url: str,
) -> None:
    settings = make_settings(tmp_path, identity_key, alpaca_sim, vault, postgres_dsn, nats_url)
    settings = settings.model_copy(
        update={
            "vault": BrokerHandoffVault(
                addr=vault.addr,
                auth="approle",
                role_id=provisioned["role_id"],
                secret_id=provisioned["secret_id"],
            )
        }
    )
    # open_harness seeds the client secret with the root token at the (default) prefix.
    async for h in open_harness(settings, identity_key, alpaca_sim, vault, postgres_dsn, nats_url):
        user = new_user()
        await h.set_tier(user, "pro_plus", 1)
        assert (await h.connect(user)).status_code == 200
        assert h.stored_token(user)
        assert (
            await h.call("GET", "/v1/broker/alpaca/account", headers=h.auth(user))
        ).status_code == 200
        assert (
            await h.call("DELETE", "/v1/broker/alpaca", headers=h.auth(user))
        ).status_code == 200
        assert h.stored_token(user) is None


async def test_revoke_all_needs_the_admin_token(bh: Harness) -> None:
    user = new_user()
    for headers in ({}, bh.auth(user), {"Authorization": "Bearer wrong"}):
        r = await bh.call("POST", "/admin/v1/broker/revoke-all", headers=headers)
        assert r.status_code == 401


async def test_revoke_all_destroys_every_token_resumes_and_is_then_a_no_op(bh: Harness) -> None:
    users = [new_user() for _ in range(3)]
    tokens = {}
    for user in users:
        await bh.set_tier(user, "pro_plus", 1)
        assert (await bh.connect(user)).status_code == 200
        tokens[user] = bh.stored_token(user)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    # Interrupted after one token: the job stays open with its cursor.
    part = await bh.call(
        "POST", "/admin/v1/broker/revoke-all", params={"max_items": 1}, headers=admin
    )
    assert part.status_code == 200, part.text
    assert part.json()["status"] == "running"
    assert part.json()["destroyed"] == 1
    assert part.json()["remaining"] == 2
    assert sum(bh.stored_token(u) is None for u in users) == 1

    # Resumed (even by a fresh request): the rest goes, counts add up.
    rest = await bh.call("POST", "/admin/v1/broker/revoke-all", headers=admin)
    body = rest.json()
    assert body["resumed"] is True
    assert body["job_id"] == part.json()["job_id"]
    assert body["status"] == "done"
    assert body["destroyed"] == 3
    assert body["failed"] == 0
    assert all(bh.stored_token(u) is None for u in users)
    for user in users:
        status = (await bh.call("GET", "/v1/broker/alpaca", headers=bh.auth(user))).json()
        assert status["connected"] is False
        assert status["status"] == "revoked"
        gone = await bh.browser.get(
            f"{bh.sim.url}/v2/account", headers={"Authorization": f"Bearer {tokens[user]}"}
        )
        assert gone.status_code in (401, 403)

    # A second run finds nothing to do.
    again = (await bh.call("POST", "/admin/v1/broker/revoke-all", headers=admin)).json()
    assert again["resumed"] is False
    assert again["destroyed"] == 0
    assert again["status"] == "done"
    jobs = bh.rows("SELECT status, destroyed FROM bh_revoke_jobs ORDER BY id")
    assert jobs == [("done", 3), ("done", 0)]
