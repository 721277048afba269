"""broker-handoff's schema under the kit's migration runner, on a real PostgreSQL.

Databases created by the pre-kit runner (which ran one idempotent text on every start and
recorded nothing) must upgrade cleanly: `0001_initial.sql` is that text, so on such a database
it changes nothing, keeps every row and is recorded in `bh_schema_migrations`.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest
from broker_handoff.adapters.postgres import MIGRATIONS, MIGRATIONS_TABLE, Store
from raxx_service_kit.migrations import load

pytestmark = pytest.mark.integration

# What an early pre-kit runner created (before browser binding, retries and per-grant paths):
# the later ALTERs of its text had not run yet.
EARLY_SCHEMA = """
CREATE TABLE bh_user_tiers (
    user_id text PRIMARY KEY, tier text NOT NULL, version bigint NOT NULL,
    changed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bh_oauth_states (
    state_key text PRIMARY KEY, user_id text NOT NULL,
    env text NOT NULL CHECK (env IN ('live', 'paper')), code_verifier text,
    redirect_uri text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL);
CREATE TABLE bh_connections (
    user_id text PRIMARY KEY, env text NOT NULL CHECK (env IN ('live', 'paper')),
    status text NOT NULL CHECK (status IN ('connected', 'disconnected', 'revoked')),
    scope text NOT NULL DEFAULT '', vault_key text NOT NULL, connected_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(), reason text NOT NULL DEFAULT '');
INSERT INTO bh_user_tiers (user_id, tier, version, changed_at)
    VALUES ('u-old', 'pro_plus', 7, now());
INSERT INTO bh_oauth_states (state_key, user_id, env, redirect_uri, expires_at)
    VALUES ('s-old', 'u-old', 'paper', 'http://cb', now() + interval '1 hour');
INSERT INTO bh_connections (user_id, env, status, vault_key, connected_at)
    VALUES ('u-old', 'live', 'connected', 'legacyhash', now());
"""


RECORDED = f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"  # noqa: S608


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql.encode()).fetchall())


def columns(dsn: str, table: str) -> set[str]:
    return {
        str(c)
        for (c,) in rows(
            dsn,
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'",  # noqa: S608 - a test's own constant
        )
    }


async def open_and_close(dsn: str) -> Store:
    store = Store(dsn)
    await store.open()
    await store.close()
    return store


async def test_a_database_the_old_runner_left_is_recorded_and_kept(postgres_dsn: str) -> None:
    # The pre-kit runner's last text (moved verbatim into 0001), run as it ran it: no record.
    [initial] = load(MIGRATIONS)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(initial.sql.encode())
        conn.execute(
            b"INSERT INTO bh_user_tiers (user_id, tier, version, changed_at)"
            b" VALUES ('u1', 'pro_plus', 3, now())"
        )
    await open_and_close(postgres_dsn)
    assert rows(postgres_dsn, RECORDED) == [("0001_initial",)]
    assert rows(postgres_dsn, "SELECT tier, version FROM bh_user_tiers") == [("pro_plus", 3)]
    await open_and_close(postgres_dsn)  # the next start applies nothing
    assert len(rows(postgres_dsn, RECORDED)) == 1


async def test_an_early_old_database_is_evolved_without_losing_rows(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(EARLY_SCHEMA.encode())
    store = Store(postgres_dsn)
    await store.open()
    try:
        assert {"binding_hash", "status", "failure", "claimed_at"} <= columns(
            postgres_dsn, "bh_oauth_states"
        )
        assert "grant_id" in columns(postgres_dsn, "bh_connections")
        assert await store.tier_of("u-old") == "pro_plus"
        state = await store.state("s-old")
        assert state is not None
        assert (state.status, state.binding_hash) == ("pending", "")
        conn = await store.connection("u-old")
        assert conn is not None
        assert (conn.status, conn.vault_key, conn.grant_id) == ("connected", "legacyhash", None)
        # The tables it lacked exist and work (per-grant paths, audit, revoke jobs).
        await store.begin_grant("g1", "u-old")
        assert (await store.grant_statuses(["g1"]))["g1"][0] == "writing"
        await store.audit("system", "u-old", "migrate", "checked", {})
        job, resumed = await store.open_revoke_job()
        assert not resumed
        assert job.status == "running"
        assert await store.apply_tier("u-old", "pro", 8, dt.datetime.now(dt.UTC))
    finally:
        await store.close()
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        rows(postgres_dsn, "DELETE FROM bh_audit")


async def test_replicas_starting_together_apply_the_schema_once(postgres_dsn: str) -> None:
    await asyncio.gather(*(open_and_close(postgres_dsn) for _ in range(4)))
    assert rows(postgres_dsn, RECORDED) == [("0001_initial",)]
    assert {"bh_grants", "bh_audit", "bh_connect_links"} <= {
        str(t)
        for (t,) in rows(
            postgres_dsn,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
    }
