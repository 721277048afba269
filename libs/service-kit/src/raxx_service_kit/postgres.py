"""PostgreSQL plumbing written once: the bounded psycopg pool and database-outage handling.

Every service with a database bounds every wait the same way: a pooled connection
(`timeout`), a new connection (libpq `connect_timeout`), a statement (server-side
`statement_timeout`), a dead peer (TCP keepalives), and an operation as a whole (a client-side
deadline: a frozen server never answers). `connection_kwargs` and `bounded_pool` build that.

`OutageGuard` is the outage state machine tier-gate and eod-settler shared as two copies: a
connectivity failure (or a missed deadline) marks the database down, later calls fail at once
with the service's `DatabaseUnavailable` (503 + `Retry-After`, or a NATS `nak(delay)`), and a
recovery probe tries a fresh connection every 0.25 s; when PostgreSQL answers, a new opened
pool replaces the old one (whose own reconnection backs off for tens of seconds), so the first
request after recovery is fast and no restart is needed.

SQL, tables, migrations and what a service calls its error stay in the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from raxx_service_kit.errors import DatabaseUnavailable, ServiceError

__all__ = [
    "CONNECTIVITY",
    "DatabaseUnavailable",
    "DbTimeouts",
    "OutageGuard",
    "bounded_pool",
    "connection_kwargs",
    "failure_reason",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECTIVITY: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)
"""Driver errors that mean "the database cannot be reached right now" (not a bad query)."""


@dataclass(frozen=True)
class DbTimeouts:
    """Bounds on every database wait (seconds)."""

    pool: float = 2.0
    """Wait for a pooled connection."""
    operation: float = 3.0
    """Client-side deadline of one operation (a frozen server never answers)."""
    statement: float = 2.5
    """Server-side `statement_timeout` (lock waits included)."""
    connect: int = 2
    """libpq `connect_timeout` (its minimum is 2 s)."""
    reconnect: float = 30.0
    """How long the pool keeps reconnecting on its own before it gives a slot up."""

    @property
    def statement_ms(self) -> int:
        """`statement` in whole milliseconds, for `-c statement_timeout=...`."""
        return round(self.statement * 1000)


def failure_reason(exc: BaseException) -> str:
    """A one-line reason for the log and `/readyz` (type and driver text, bounded)."""
    return f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"[:200]


def connection_kwargs(
    *,
    autocommit: bool,
    connect_timeout: int,
    options: str,
    keepalives_idle: int = 5,
    keepalives_interval: int = 2,
    keepalives_count: int = 3,
) -> dict[str, Any]:
    """libpq connection arguments with every wait bounded: `connect_timeout` (libpq's minimum
    is 2 s), the session `options` (e.g. `-c statement_timeout=2500`) and TCP keepalives, so
    a peer that vanished (host down, partition) is noticed in seconds, not hours."""
    return {
        "autocommit": autocommit,
        "connect_timeout": connect_timeout,
        "options": options,
        "keepalives": 1,
        "keepalives_idle": keepalives_idle,
        "keepalives_interval": keepalives_interval,
        "keepalives_count": keepalives_count,
    }


def bounded_pool(
    dsn: str,
    kwargs: dict[str, Any],
    *,
    max_size: int,
    timeout: float,
    reconnect_timeout: float = 30.0,
) -> AsyncConnectionPool[Any]:
    """A closed pool (open it yourself) that waits `timeout` at most for a connection and
    checks a connection before handing it out."""
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs=kwargs,
        timeout=timeout,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=reconnect_timeout,
    )


class OutageGuard:
    """A bounded pool that knows when PostgreSQL is down, and replaces itself when it is back.

    `unavailable(message)` builds the service's own `DatabaseUnavailable` (the service decides
    whether the text is public or for the log only). Connections get the kit's keepalives,
    `connect_timeout` and `statement_timeout` from `timeouts`. The recovery probe gives a fresh
    connection `timeouts.connect + 1` s to answer.
    """

    def __init__(
        self,
        dsn: str,
        max_size: int,
        timeouts: DbTimeouts,
        unavailable: Callable[[str], ServiceError],
        *,
        name: str,
        autocommit: bool = True,
    ) -> None:
        self._dsn = dsn
        self._kwargs = connection_kwargs(
            autocommit=autocommit,
            connect_timeout=timeouts.connect,
            options=f"-c statement_timeout={timeouts.statement_ms}",
        )
        self._max_size = max_size
        self._pool_timeout = timeouts.pool
        self._reconnect = timeouts.reconnect
        self._probe_timeout = timeouts.connect + 1.0
        self._unavailable = unavailable
        self._name = name
        self.pool = self._new_pool()
        self._outage: tuple[str, float] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.recoveries = 0
        """Outages recovered from (the pool replaced)."""

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return bounded_pool(
            self._dsn,
            self._kwargs,
            max_size=self._max_size,
            timeout=self._pool_timeout,
            reconnect_timeout=self._reconnect,
        )

    @property
    def outage(self) -> str | None:
        """Why PostgreSQL is considered down right now (None: it is up)."""
        return self._outage[0] if self._outage else None

    async def close(self) -> None:
        """Stop the recovery probe, abandon stuck work, close the pool."""
        for task in [*self._background, *([self._recovery] if self._recovery else [])]:
            task.cancel()
        await self.pool.close(timeout=2)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection within the pool timeout (errors are the driver's)."""
        async with self.pool.connection(timeout=self._pool_timeout) as conn:
            yield conn

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to work we stopped waiting for until it ends."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def trip(self, reason: str) -> None:
        """Mark the database down (keeping when the outage began) and start the probe."""
        if self._outage is None:
            log.warning("PostgreSQL marked down: %s", reason)
            self._outage = (reason, time.monotonic())
        else:
            self._outage = (reason, self._outage[1])
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name=f"{self._name}:db-recovery")

    def failed(self, what: str, exc: BaseException) -> ServiceError:
        """A connectivity failure: mark the database down and return the typed error."""
        self.trip(failure_reason(exc))
        return self._unavailable(f"{what}: {exc}")

    async def bounded(
        self,
        what: str,
        op: Callable[[], Awaitable[T]],
        *,
        timeout: float,  # noqa: ASYNC109 - enforced by cancelling in the background
        trip: bool = True,
    ) -> T:
        """Run `op` with a deadline. Past it the work is cancelled in the background (psycopg
        then cancels it server-side or drops the connection) and the caller gets its error now,
        not when the server thaws. `trip=False`: the operation also waits on something else,
        so its deadline alone does not mark the database down."""
        task = asyncio.ensure_future(op())
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            self.keep(task)
            raise
        if not done:
            task.cancel()
            self.keep(task)
            if trip:
                self.trip(f"no answer within {timeout:.1f} s")
            raise self._unavailable(f"{what}: no answer within {timeout:.1f} s")
        return task.result()

    async def _probe_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._dsn, **{**self._kwargs, "autocommit": True}
        )
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    async def _recover(self) -> None:
        """While down: probe a fresh connection every 0.25 s; when it answers, swap the pool."""
        limit = self._probe_timeout
        while self._outage is not None:
            probe = asyncio.ensure_future(self._probe_once())
            done, _ = await asyncio.wait({probe}, timeout=limit)
            if not done:
                probe.cancel()
                self.keep(probe)
                reason = f"no answer within {limit:.1f} s"
            elif (exc := probe.exception()) is not None:
                reason = failure_reason(exc)
            else:
                new = self._new_pool()
                try:
                    await new.open(wait=True, timeout=limit)
                except Exception as err:
                    self.keep(asyncio.ensure_future(new.close(timeout=1)))
                    reason = f"pool did not open: {err}"[:200]
                else:
                    old, self.pool = self.pool, new
                    down_for = time.monotonic() - self._outage[1]
                    self._outage = None
                    self.recoveries += 1
                    log.warning("PostgreSQL back after %.1f s; connection pool replaced", down_for)
                    self.keep(asyncio.ensure_future(old.close(timeout=5)))
                    return
            self._outage = (reason, self._outage[1])
            await asyncio.sleep(0.25)
