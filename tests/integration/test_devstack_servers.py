"""The integration fixtures really start (or reach) working servers."""

from __future__ import annotations

import httpx
import nats
import psycopg
import pytest

from tests.integration.fixtures.servers import Vault

pytestmark = pytest.mark.integration


async def test_nats_server_has_jetstream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


def test_postgres_database_is_fresh_and_writable(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (1)")


def test_openbao_kv_v2_round_trip(vault: Vault) -> None:
    headers = {"X-Vault-Token": vault.token}
    url = f"{vault.addr}/v1/secret/data/it/probe"
    put = httpx.post(url, headers=headers, json={"data": {"v": "1"}})
    assert put.status_code == 200, put.text
    got = httpx.get(url, headers=headers).json()
    assert got["data"]["data"] == {"v": "1"}
