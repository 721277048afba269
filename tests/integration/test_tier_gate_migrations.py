"""tier-gate's schema on the service kit's migration runner, against a real PostgreSQL.

A database created by tier-gate's old in-code runner (integer versions in
`tg_schema_migrations`) must upgrade cleanly: the numbered files are idempotent, so the kit's
runner re-applies them as no-ops, records them in `tg_migrations`, and applies only what the
old database lacked (here `0003_client_key` for a database stopped at version 2).
"""

from __future__ import annotations

import psycopg
import pytest
from tier_gate.adapters.postgres import MIGRATIONS_TABLE, Database

pytestmark = pytest.mark.integration

OLD_RUNNER = (
    # Verbatim from the old `tier_gate.adapters.postgres.MIGRATIONS` (before the kit).
    """
    CREATE TABLE tg_entitlements (
        user_id    text PRIMARY KEY,
        tier       text NOT NULL,
        version    bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE tg_credentials (
        user_pub   text PRIMARY KEY,
        user_id    text NOT NULL,
        tier       text NOT NULL,
        issued_at  bigint NOT NULL,
        expires_at bigint NOT NULL,
        revoked_ts bigint
    );
    CREATE INDEX tg_credentials_user ON tg_credentials (user_id, expires_at);
    CREATE INDEX tg_credentials_revoked ON tg_credentials (expires_at)
        WHERE revoked_ts IS NOT NULL;
    """,
    """
    CREATE TABLE tg_account_pushes (
        account_pub text PRIMARY KEY,
        iat         bigint NOT NULL
    );
    """,
    """
    ALTER TABLE tg_credentials ADD COLUMN client_key boolean NOT NULL DEFAULT false;
    """,
)
VERSIONS = ["0001_entitlements_credentials", "0002_account_pushes", "0003_client_key"]


async def _old_runner(dsn: str, upto: int) -> None:
    """What the old runner did on a first start with `upto` migrations in the code."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tg_schema_migrations ("
                " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for number, text in enumerate(OLD_RUNNER[:upto], start=1):
                await conn.execute(text.encode())
                await conn.execute(
                    "INSERT INTO tg_schema_migrations (version) VALUES (%s)", (number,)
                )
        await conn.execute(
            "INSERT INTO tg_entitlements (user_id, tier, version) VALUES ('alice', 'pro', 4)"
        )
        await conn.execute(
            "INSERT INTO tg_credentials (user_pub, user_id, tier, issued_at, expires_at)"
            " VALUES ('UKEY', 'alice', 'pro', 1, 2)"
        )


async def _state(dsn: str) -> tuple[list[str], list[tuple[object, ...]], list[str]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version")  # noqa: S608
        recorded = [str(r[0]) for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT e.user_id, e.tier, e.version, c.user_pub, c.client_key"
            " FROM tg_entitlements e JOIN tg_credentials c USING (user_id)"
        )
        rows = [tuple(r) for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'tg_credentials' ORDER BY column_name"
        )
        columns = [str(r[0]) for r in await cur.fetchall()]
    return recorded, rows, columns


async def _open_twice(dsn: str) -> list[str]:
    """Start twice (as two deploys would); return what the second start applied."""
    first = Database(dsn, max_size=1)
    await first.open()
    await first.close()
    again = Database(dsn, max_size=1)
    await again.open()
    applied_again = await again.migrate()
    await again.close()
    return applied_again


@pytest.mark.parametrize("upto", [3, 2, 1])
async def test_a_database_of_the_old_runner_upgrades_cleanly(postgres_dsn: str, upto: int) -> None:
    await _old_runner(postgres_dsn, upto)
    applied_again = await _open_twice(postgres_dsn)
    assert applied_again == []
    recorded, rows, columns = await _state(postgres_dsn)
    assert recorded == VERSIONS
    assert rows == [("alice", "pro", 4, "UKEY", False)]  # data kept, new column defaulted
    assert "client_key" in columns


async def test_a_fresh_database_gets_the_whole_schema(postgres_dsn: str) -> None:
    db = Database(postgres_dsn, max_size=1)
    await db.open()
    try:
        assert await db.migrate() == []  # open() applied everything already
        await db.apply_tier("bob", "free", None, revoke_for=lambda _o, _n: (),
                            default_tier="free", now=0)  # fmt: skip
        assert await db.get_tier("bob") == ("free", 1)
    finally:
        await db.close()
    recorded, _, columns = await _state(postgres_dsn)
    assert recorded == VERSIONS
    assert "client_key" in columns
