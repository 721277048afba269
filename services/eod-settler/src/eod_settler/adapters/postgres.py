"""Postgres (psycopg 3 async): migrations, settles, the outbox, the per-date universe.

Outages are bounded: a pooled connection is waited for at most `pool_timeout`, sessions run
with `statement_timeout`, the API's reads and the readiness ping have a client-side deadline
(a frozen server never answers), and a failed connection marks the database down: reads
then fail at once with `DatabaseUnavailableError` (HTTP 503 + Retry-After) while a probe
tries a fresh connection every 0.25 s and, when PostgreSQL answers, replaces the pool, so
the first request after recovery is fast and no restart is needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from raxx_contracts import AssetClass, SettleFeed, SettleSource
from raxx_service_kit.migrations import migrate
from raxx_service_kit.postgres import CONNECTIVITY, DbTimeouts, OutageGuard

from eod_settler.domain import Stored, Target
from eod_settler.errors import DatabaseUnavailableError, RetryableError, RunInProgressError

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = "eod_settler.migrations"
MIGRATIONS_TABLE = "eod_schema_migrations"
_RELAY_LOCK = 0x0E0D5E78
TIMEOUTS = DbTimeouts(pool=2.0, operation=3.0, statement=30.0, connect=2)
"""The settler's defaults: its statements (a whole date's settles) may run for 30 s."""


@dataclass(frozen=True, slots=True)
class SettleRow:
    """One settle revision to write, with its outbox message."""

    date: dt.date
    symbol: str
    revision: int
    asset_class: AssetClass
    price: Decimal
    source: SettleSource
    feed: SettleFeed | None
    stale: bool
    session_close: dt.datetime
    computed_at: dt.datetime
    subject: str
    msg_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An unpublished outbox message."""

    id: int
    kind: str
    source: str | None
    subject: str
    msg_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CorpActionRow:
    """One corporate-action revision to write, with its outbox message."""

    date: dt.date
    symbol: str
    action_id: str
    revision: int
    type: str
    content_hash: str
    computed_at: dt.datetime
    subject: str
    msg_id: str
    payload: bytes


def unreachable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    """The typed error of a database that cannot be reached: where (host, port, database;
    never the password) and the driver's reason, e.g. connection refused."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        info = {}
    where = (
        f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or '?'}"
    )
    reason = " ".join(str(exc).split()) or "no detail"
    return DatabaseUnavailableError(
        f"PostgreSQL at {where} is unreachable; is it running (`make run`), and is"
        " EOD_DATABASE_URL right?",
        log_detail=f"{type(exc).__name__}: {reason}"[:300],
    )


async def apply_migrations(dsn: str) -> list[str]:
    """Apply the package's pending numbered SQL files with the kit's runner; returns them.

    The record table and versions (file stems) are the ones the settler's earlier runner
    wrote, so a database it created is recognised and only newer files are applied."""
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=3)
    except (psycopg.Error, OSError) as exc:
        raise unreachable(dsn, exc) from None
    async with conn:
        return await migrate(conn, MIGRATIONS, table=MIGRATIONS_TABLE)


def _date_lock_key(date: dt.date, kind: str = "settle") -> int:
    digest = hashlib.sha256(f"eod-{kind}:{date.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Store:
    """All SQL of the settler; every method is one short transaction unless it says otherwise."""

    def __init__(self, dsn: str, *, max_size: int = 8, timeouts: DbTimeouts = TIMEOUTS) -> None:
        self._dsn = dsn
        self._operation_timeout = timeouts.operation
        self._guard = OutageGuard(
            dsn, max_size, timeouts, DatabaseUnavailableError, name="eod", autocommit=False
        )

    @classmethod
    async def open(cls, dsn: str, *, max_size: int = 8, timeouts: DbTimeouts = TIMEOUTS) -> Store:
        """Check PostgreSQL answers, then open a pool.

        A database that is down is a `DatabaseUnavailableError` naming where it was looked
        for and why it failed (connection refused, authentication, unknown database), never a
        bare `PoolTimeout` from the pool."""
        store = cls(dsn, max_size=max_size, timeouts=timeouts)
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=3)
        except (psycopg.Error, OSError) as exc:
            raise unreachable(dsn, exc) from None
        await conn.close()
        try:
            await store._guard.pool.open(wait=True, timeout=15)
        except Exception as exc:
            await store._guard.pool.close()
            raise unreachable(dsn, exc) from None
        return store

    async def close(self) -> None:
        """Stop the recovery probe, abandon stuck work, close the pool."""
        await self._guard.close()

    @property
    def outage(self) -> str | None:
        """Why PostgreSQL is considered down right now (None: up)."""
        return self._guard.outage

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection within `pool_timeout`; connectivity failures are typed."""
        if self.outage is not None:
            raise DatabaseUnavailableError(f"postgres down ({self.outage})")
        try:
            async with self._guard.connection() as conn:
                yield conn
        except psycopg.errors.QueryCanceled as exc:
            raise RetryableError("postgres statement timeout", 2) from exc
        except CONNECTIVITY as exc:
            raise self._guard.failed("postgres", exc) from exc

    async def _bounded(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` with the operation deadline; past it, answer now and abandon the work."""
        return await self._guard.bounded("postgres", op, timeout=self._operation_timeout)

    async def ping(self) -> None:
        """Raise (DatabaseUnavailableError) when the database does not answer in time."""

        async def _ping() -> None:
            async with self._connection() as conn:
                await conn.execute("SELECT 1")
                await conn.rollback()

        await self._bounded(_ping)

    async def migrate(self) -> list[str]:
        """Apply the package's pending numbered SQL files (`apply_migrations`)."""
        return await apply_migrations(self._dsn)

    @asynccontextmanager
    async def date_lock(self, date: dt.date, kind: str = "settle") -> AsyncIterator[None]:
        """Hold a session advisory lock for (`kind`, `date`); RunInProgressError if taken."""
        async with self._connection() as conn:
            await conn.set_autocommit(True)
            key = _date_lock_key(date, kind)
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cur.fetchone()
            if not row or not row[0]:
                await conn.set_autocommit(False)
                raise RunInProgressError(date)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                await conn.set_autocommit(False)

    async def record_universe(self, date: dt.date, targets: Iterable[Target], origin: str) -> None:
        """Remember symbols to settle for `date` (first origin wins)."""
        rows = [(date, t.symbol, str(t.asset_class), origin) for t in targets]
        if not rows:
            return
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO settle_universe (date, symbol, asset_class, origin)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )

    async def universe(self, date: dt.date) -> list[Target]:
        """Symbols recorded for `date`."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT symbol, asset_class FROM settle_universe WHERE date = %s", (date,)
            )
            return [Target(s, AssetClass(a)) for s, a in await cur.fetchall()]

    async def latest_for_date(self, date: dt.date, symbols: Sequence[str]) -> dict[str, Stored]:
        """Latest stored revision per symbol for `date`."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (symbol) symbol, price, source, stale, revision"
                " FROM settles WHERE date = %s AND symbol = ANY(%s)"
                " ORDER BY symbol, revision DESC",
                (date, list(symbols)),
            )
            return {
                s: Stored(p, SettleSource(src), st, rev)
                for s, p, src, st, rev in await cur.fetchall()
            }

    async def previous_prices(self, date: dt.date, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The most recent settle price before `date`, per symbol (latest revision)."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (symbol) symbol, price FROM settles"
                " WHERE symbol = ANY(%s) AND date < %s"
                " ORDER BY symbol, date DESC, revision DESC",
                (list(symbols), date),
            )
            return {s: p for s, p in await cur.fetchall()}

    async def write_settles(self, rows: Sequence[SettleRow]) -> None:
        """Insert settle revisions and their outbox messages in ONE transaction (COPY).

        Runs under the date lock, so a (date, symbol, revision) or a Msg-Id cannot collide.
        """
        if not rows:
            return
        try:
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                async with cur.copy(
                    "COPY settles (date, symbol, revision, asset_class, price, source, feed,"
                    " stale, session_close, computed_at) FROM STDIN"
                ) as copy:
                    for r in rows:
                        await copy.write_row(
                            (r.date, r.symbol, r.revision, str(r.asset_class), r.price,
                             str(r.source), str(r.feed) if r.feed else None, r.stale,
                             r.session_close, r.computed_at)
                        )  # fmt: skip
                async with cur.copy(
                    "COPY settle_outbox (date, kind, source, subject, msg_id, payload) FROM STDIN"
                ) as copy:
                    for r in rows:
                        await copy.write_row(
                            (r.date, "settle", str(r.source), r.subject, r.msg_id, r.payload)
                        )
        except psycopg.OperationalError as exc:
            raise RetryableError(f"postgres write failed: {exc}") from exc

    async def corpaction_hashes(self, date: dt.date) -> dict[tuple[str, str], tuple[int, str]]:
        """{(symbol, action id): (latest revision, content hash)} of `date`'s actions."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (symbol, action_id) symbol, action_id, revision, content_hash"
                " FROM corporate_actions WHERE date = %s"
                " ORDER BY symbol, action_id, revision DESC",
                (date,),
            )
            return {(s, a): (r, h) for s, a, r, h in await cur.fetchall()}

    async def write_corpactions(self, rows: Sequence[CorpActionRow]) -> None:
        """Insert action revisions and their outbox messages in ONE transaction.

        Runs under the (corpactions, date) lock, so a revision or a Msg-Id cannot collide.
        """
        if not rows:
            return
        try:
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO corporate_actions (date, symbol, action_id, revision, type,"
                    " content_hash, computed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (r.date, r.symbol, r.action_id, r.revision, r.type, r.content_hash,
                         r.computed_at)
                        for r in rows
                    ],
                )  # fmt: skip
                await cur.executemany(
                    "INSERT INTO settle_outbox (date, kind, source, subject, msg_id, payload)"
                    " VALUES (%s, 'corpaction', %s, %s, %s, %s)",
                    [(r.date, r.type, r.subject, r.msg_id, r.payload) for r in rows],
                )
        except psycopg.OperationalError as exc:
            raise RetryableError(f"postgres write failed: {exc}") from exc

    async def complete_corpactions(self, date: dt.date, actions: int) -> None:
        """Record that `date`'s corporate actions run completed."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO corpaction_runs (date, actions, completed_at) VALUES (%s, %s, now())"
                " ON CONFLICT (date) DO UPDATE SET actions = EXCLUDED.actions,"
                " completed_at = EXCLUDED.completed_at",
                (date, actions),
            )

    async def corpactions_complete(self, date: dt.date) -> bool:
        """Whether `date`'s corporate actions run completed."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT 1 FROM corpaction_runs WHERE date = %s", (date,))
            return await cur.fetchone() is not None

    async def latest_revisions(self, date: dt.date) -> dict[str, tuple[int, bool]]:
        """{symbol: (latest revision, stale)} for `date`: the date's complete set."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (symbol) symbol, revision, stale FROM settles"
                " WHERE date = %s ORDER BY symbol, revision DESC",
                (date,),
            )
            return {s: (r, st) for s, r, st in await cur.fetchall()}

    async def complete_date(
        self,
        date: dt.date,
        session_close: dt.datetime,
        count: int,
        stale: int,
        subject: str,
        msg_id: str,
        payload: bytes,
    ) -> bool:
        """Enqueue the batch marker (unless this exact content was enqueued) and mark the date
        complete, in one transaction. Returns True when a new marker was enqueued."""
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO settle_outbox (date, kind, subject, msg_id, payload)"
                " VALUES (%s, 'done', %s, %s, %s) ON CONFLICT (msg_id) DO NOTHING",
                (date, subject, msg_id, payload),
            )
            enqueued = bool(cur.rowcount == 1)
            await conn.execute(
                "INSERT INTO settle_runs (date, session_close, count, stale, done_msg_id,"
                " completed_at) VALUES (%s, %s, %s, %s, %s, now())"
                " ON CONFLICT (date) DO UPDATE SET count = EXCLUDED.count,"
                " stale = EXCLUDED.stale, done_msg_id = EXCLUDED.done_msg_id,"
                " completed_at = EXCLUDED.completed_at, session_close = EXCLUDED.session_close",
                (date, session_close, count, stale, msg_id),
            )
        return enqueued

    async def is_complete(self, date: dt.date) -> bool:
        """Whether `date` has a completed run."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT 1 FROM settle_runs WHERE date = %s", (date,))
            row = await cur.fetchone()
            return row is not None

    async def needs_reread(self, date: dt.date) -> bool:
        """Whether `date` is complete and its next-morning re-read has not been done."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM settle_runs WHERE date = %s AND reread_at IS NULL", (date,)
            )
            row = await cur.fetchone()
            await conn.rollback()
            return row is not None

    async def mark_reread(self, date: dt.date) -> None:
        """Record that `date`'s next-morning re-read ran (the first one wins)."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE settle_runs SET reread_at = now() WHERE date = %s AND reread_at IS NULL",
                (date,),
            )

    async def last_complete_close(self) -> dt.datetime | None:
        """Session close of the latest completed date."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT max(session_close) FROM settle_runs")
            row = await cur.fetchone()
            return row[0] if row else None

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[tuple[list[OutboxRow], list[int]]]:
        """Lock up to `limit` unpublished rows (id order) inside one transaction.

        One relay at a time (a transaction advisory lock; another relay gets no rows), so rows
        go out in id order and a batch marker never overtakes the settles before it. The caller
        publishes them and appends acked ids to the yielded list; those are marked published
        when the block exits, in the same transaction.
        """
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_RELAY_LOCK,))
            got = await cur.fetchone()
            rows: list[OutboxRow] = []
            if got and got[0]:
                cur = await conn.execute(
                    "SELECT id, kind, source, subject, msg_id, payload FROM settle_outbox"
                    " WHERE published_at IS NULL ORDER BY id LIMIT %s",
                    (limit,),
                )
                rows = [OutboxRow(i, k, s, subj, m, bytes(p)) for i, k, s, subj, m, p in
                        await cur.fetchall()]  # fmt: skip
            acked: list[int] = []
            yield rows, acked
            if acked:
                await conn.execute(
                    "UPDATE settle_outbox SET published_at = now() WHERE id = ANY(%s)", (acked,)
                )

    async def outbox_depth(self, date: dt.date | None = None) -> int:
        """Unpublished outbox rows (for one date, or all)."""
        async with self._connection() as conn:
            if date is None:
                cur = await conn.execute(
                    "SELECT count(*) FROM settle_outbox WHERE published_at IS NULL"
                )
            else:
                cur = await conn.execute(
                    "SELECT count(*) FROM settle_outbox WHERE published_at IS NULL AND date = %s",
                    (date,),
                )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def settles_for_date(self, date: dt.date) -> list[dict[str, Any]]:
        """Latest revision of every settle of `date`, ordered by symbol (bounded wait)."""

        async def _read() -> list[dict[str, Any]]:
            async with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    "SELECT DISTINCT ON (symbol) date, symbol, asset_class, price, source, feed,"
                    " revision, stale, session_close, computed_at FROM settles WHERE date = %s"
                    " ORDER BY symbol, revision DESC",
                    (date,),
                )
                rows = list(await cur.fetchall())
                await conn.rollback()
                return rows

        return await self._bounded(_read)
