"""raxx_service_kit.migrations against a real PostgreSQL: order, ALTER, failure, racing replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from raxx_service_kit.migrations import load, migrate

pytestmark = pytest.mark.integration


def write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


async def test_applies_in_order_evolves_a_table_and_is_idempotent(
    postgres_dsn: str, tmp_path: Path
) -> None:
    d = write(
        tmp_path / "m",
        {
            "0002_add_note.sql": "ALTER TABLE item ADD COLUMN note text NOT NULL DEFAULT '';",
            "0001_init.sql": "CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item VALUES (1);",
            "README.txt": "ignored",
        },
    )
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        assert await migrate(conn, d, table="kit_migrations") == ["0001_init", "0002_add_note"]
        assert await migrate(conn, d, table="kit_migrations") == []
        write(d, {"0003_backfill.sql": "UPDATE item SET note = 'x';"})
        assert await migrate(conn, d, table="kit_migrations") == ["0003_backfill"]
        cur = await conn.execute("SELECT id, note FROM item")
        assert await cur.fetchall() == [(1, "x")]


async def test_a_failing_file_keeps_the_earlier_ones_and_records_nothing(
    postgres_dsn: str, tmp_path: Path
) -> None:
    d = write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE a (x int);",
            "0002_bad.sql": "CREATE TABLE b (x int); SELEC 1;",
        },
    )
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            await migrate(conn, d)
        cur = await conn.execute("SELECT version FROM schema_migrations")
        assert await cur.fetchall() == [("0001_ok",)]
        cur = await conn.execute("SELECT to_regclass('b') IS NULL")
        assert await cur.fetchone() == (True,)


async def test_racing_replicas_apply_each_file_once(postgres_dsn: str, tmp_path: Path) -> None:
    d = write(
        tmp_path / "m",
        {
            "0001_init.sql": "CREATE TABLE n (x int); SELECT pg_sleep(0.2);",
            "0002_more.sql": "INSERT INTO n VALUES (1);",
        },
    )
    conns = [await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c, d) for c in conns))
        assert sorted(v for r in results for v in r) == ["0001_init", "0002_more"]
        cur = await conns[0].execute("SELECT count(*) FROM n")
        assert await cur.fetchone() == (1,)
    finally:
        for c in conns:
            await c.close()


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        load(write(tmp_path / "m", {"1_init.sql": "SELECT 1;"}))
