"""eod-settler's schema on the kit's migration runner, against a real PostgreSQL: databases the
settler's earlier runner created upgrade cleanly, and the settings' defaults reach `make run`'s
database."""

from __future__ import annotations

import datetime as dt
import os
from importlib import resources

import psycopg
import pytest
from eod_settler.adapters.postgres import MIGRATIONS_TABLE, Store, apply_migrations
from eod_settler.errors import DatabaseUnavailableError
from eod_settler.settings import Settings
from psycopg import sql
from raxx_devstack.ports import free_port
from raxx_service_kit.settings import DEV_PORTS

pytestmark = pytest.mark.integration

ALL = ["0001_init", "0002_corpactions", "0002_feed_intrinsic"]


def old_runner(dsn: str, only: list[str] | None = None) -> None:
    """The settler's runner before the kit (copied from its last version): every pending file
    in name order in ONE transaction under its own advisory lock, recorded by file stem."""
    files = sorted(
        (f for f in resources.files("eod_settler.migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x0E0D5E77,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS eod_schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM eod_schema_migrations")}
        for f in files:
            version = f.name.removesuffix(".sql")
            if version in done or (only is not None and version not in only):
                continue
            conn.execute(f.read_text())
            conn.execute("INSERT INTO eod_schema_migrations (version) VALUES (%s)", (version,))


def recorded(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        q = sql.SQL("SELECT version FROM {} ORDER BY version").format(
            sql.Identifier(MIGRATIONS_TABLE)
        )
        return [r[0] for r in conn.execute(q)]


def write_intrinsic_settle(dsn: str) -> None:
    """A row only the full schema accepts (0002_feed_intrinsic: `feed`, price 0 if intrinsic)."""
    with psycopg.connect(dsn) as conn:
        now = dt.datetime(2025, 12, 23, 21, 0, tzinfo=dt.UTC)
        conn.execute(
            "INSERT INTO settles (date, symbol, revision, asset_class, price, source, stale,"
            " session_close, computed_at, feed) VALUES (%s, %s, 1, 'options', 0, 'intrinsic',"
            " false, %s, %s, 'opra')",
            (dt.date(2025, 12, 23), "SPY251223C00700000", now, now),
        )
        conn.execute(
            "INSERT INTO settle_outbox (date, kind, subject, msg_id, payload)"
            " VALUES (%s, 'corpaction', 'md.corpactions.x', 'm1', '\\x00')",
            (dt.date(2025, 12, 23),),
        )


async def test_database_made_by_the_old_runner_is_recognised(postgres_dsn: str) -> None:
    old_runner(postgres_dsn)
    assert await apply_migrations(postgres_dsn) == []
    assert recorded(postgres_dsn) == ALL
    write_intrinsic_settle(postgres_dsn)


async def test_old_database_before_later_files_gets_only_those(postgres_dsn: str) -> None:
    old_runner(postgres_dsn, only=["0001_init"])
    assert recorded(postgres_dsn) == ["0001_init"]
    assert await apply_migrations(postgres_dsn) == ["0002_corpactions", "0002_feed_intrinsic"]
    assert recorded(postgres_dsn) == ALL
    write_intrinsic_settle(postgres_dsn)
    assert await apply_migrations(postgres_dsn) == []


async def test_fresh_database_then_store_migrate_is_idempotent(postgres_dsn: str) -> None:
    assert await apply_migrations(postgres_dsn) == ALL
    store = await Store.open(postgres_dsn)
    try:
        assert await store.migrate() == []
    finally:
        await store.close()
    write_intrinsic_settle(postgres_dsn)


async def test_defaults_reach_make_runs_database(
    pg_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No EOD_DATABASE_URL: the default is make run's (postgres@127.0.0.1:15432/eod_settler,
    shifted by RAXX_PORT_OFFSET, which here points it at the test's server)."""
    port = int(psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)["port"] or 5432)
    for key in [k for k in os.environ if k.startswith("EOD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RAXX_PORT_OFFSET", str(port - DEV_PORTS["postgres"]))
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS eod_settler WITH (FORCE)")
        conn.execute("CREATE DATABASE eod_settler")
    try:
        settings = Settings()
        assert settings.database_url == f"postgresql://postgres@127.0.0.1:{port}/eod_settler"
        assert await apply_migrations(settings.database_url) == ALL
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS eod_settler WITH (FORCE)")


async def test_database_down_is_a_typed_error_naming_where() -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://postgres@127.0.0.1:{port}/eod_settler"
    for attempt in (Store.open(dsn), apply_migrations(dsn)):
        with pytest.raises(DatabaseUnavailableError) as info:
            await attempt
        assert f"127.0.0.1:{port}/eod_settler" in info.value.message
        assert info.value.log_detail is not None
        assert "refused" in info.value.log_detail.lower()
