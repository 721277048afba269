"""raxx_service_kit.postgres against a real PostgreSQL: the outage guard trips, answers at once
while down, and replaces its pool when the database answers again."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from raxx_service_kit.errors import DatabaseUnavailable
from raxx_service_kit.postgres import CONNECTIVITY, DbTimeouts, OutageGuard

pytestmark = pytest.mark.integration


def guard(dsn: str) -> OutageGuard:
    return OutageGuard(
        dsn,
        2,
        DbTimeouts(pool=1.0, connect=2, statement=2.0),
        lambda detail: DatabaseUnavailable(log_detail=detail),
        name="kit-test",
    )


async def until(cond: Callable[[], bool], deadline: float) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_a_missed_deadline_trips_and_the_probe_replaces_the_pool(postgres_dsn: str) -> None:
    g = guard(postgres_dsn)
    await g.pool.open(wait=True, timeout=10)
    try:
        first = g.pool

        async def select_one() -> int:
            async with g.connection() as conn:
                cur = await conn.execute("SELECT 1")
                row = await cur.fetchone()
            return int(row[0]) if row else 0

        assert await g.bounded("select", select_one, timeout=3.0) == 1
        assert g.outage is None

        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as err:
            await g.bounded("sleep", lambda: asyncio.sleep(30), timeout=0.2)
        assert time.monotonic() - started < 2.0  # answered at the deadline, not after the work
        assert err.value.code == "database_unavailable"
        assert err.value.retry_after == 2.0
        assert err.value.log_detail == "sleep: no answer within 0.2 s"

        # The database answers, so the probe swaps in a fresh opened pool and clears the outage.
        await until(lambda: g.outage is None, 10.0)
        assert g.recoveries == 1
        assert g.pool is not first
        assert await g.bounded("select", select_one, timeout=3.0) == 1
    finally:
        await g.close()


async def test_an_unreachable_database_is_typed_and_stays_down() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = guard(f"postgresql://raxx@127.0.0.1:{port}/raxx")
    await g.pool.open(wait=False)  # connects in the background; acquiring times out

    async def select_one() -> None:
        async with g.connection() as conn:
            await conn.execute("SELECT 1")

    try:
        with pytest.raises(CONNECTIVITY) as raised:
            await g.bounded("select", select_one, timeout=5.0)
        assert type(raised.value).__name__ == "PoolTimeout"
        err = g.failed("select", raised.value)
        assert isinstance(err, DatabaseUnavailable)
        assert (err.status, err.code) == (503, "database_unavailable")
        assert g.outage is not None
        assert g.outage.startswith("PoolTimeout")
        # The probe's own verdict replaces the first reason: the port still refuses.
        await until(lambda: g.outage is not None and "PoolTimeout" not in g.outage, 10.0)
        assert g.outage is not None
        assert "OperationalError" in g.outage
        assert g.recoveries == 0
    finally:
        await g.close()
