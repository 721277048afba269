"""One migration runner over numbered SQL files shipped in a service's package.

A service keeps its SQL in a package directory (`eod_settler/migrations/0001_init.sql`,
`0002_add_feed.sql`, ...). `migrate` applies the files not yet recorded, in order of their
number (then name), **each in its own transaction** together with its row in the record
table, so a failing file leaves the database at the previous file and is retried next start.
Every transaction first takes a Postgres advisory lock keyed by the table name: replicas
starting together apply each file exactly once. A file may do anything SQL can in a
transaction, `ALTER TABLE` included, which is how a table evolves: never edit an applied file,
add the next number.

The recorded version is the file name without `.sql` (what eod-settler already records).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from psycopg import AsyncConnection, sql

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_.-]+\.sql$")
_LOCK_NAMESPACE = 0x5241  # "RA": the first key of pg_advisory_xact_lock(int, int)


@dataclass(frozen=True)
class Migration:
    """One SQL file: `version` is its name without `.sql`."""

    number: int
    version: str
    sql: str


def load(source: str | Traversable) -> list[Migration]:
    """The migrations in a package (`"eod_settler.migrations"`) or directory, in order.

    Files that do not look like `NNNN_name.sql` are refused (a typo would be skipped silently).
    """
    root = resources.files(source) if isinstance(source, str) else source
    out: list[Migration] = []
    for f in root.iterdir():
        if not f.name.endswith(".sql"):
            continue
        m = _NAME.match(f.name)
        if m is None:
            raise ValueError(f"migration file {f.name!r} is not named NNNN_name.sql")
        out.append(Migration(int(m.group(1)), f.name.removesuffix(".sql"), f.read_text()))
    return sorted(out, key=lambda m: (m.number, m.version))


async def migrate(
    conn: AsyncConnection[Any],
    source: str | Traversable,
    *,
    table: str = "schema_migrations",
) -> list[str]:
    """Apply the pending migrations of `source`; returns the versions applied by this call."""
    migrations = load(source)
    ident = sql.Identifier(table)
    lock = sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext({}))").format(
        sql.Literal(_LOCK_NAMESPACE), sql.Literal(table)
    )
    applied: list[str] = []
    for m in migrations:
        async with conn.transaction():
            await conn.execute(lock)
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(ident)
            )
            cur = await conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE version = %s").format(ident), (m.version,)
            )
            if await cur.fetchone() is not None:
                continue
            await conn.execute(m.sql.encode())
            await conn.execute(
                sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(ident), (m.version,)
            )
        log.info("migration %s applied to %s", m.version, table)
        applied.append(m.version)
    return applied
