"""eod-settler delivery: exactly-once settles over real nats-server, PostgreSQL, alpaca-sim."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest
from eod_settler.adapters.postgres import Store
from eod_settler.service import RunReport

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_helpers import (
    Consumer,
    make_settings,
    open_runtime,
    stream_count,
)

pytestmark = pytest.mark.integration

D1 = dt.date(2025, 12, 23)
SYMBOLS = [f"T{i:03d}" for i in range(120)] + ["BRK.B"]


async def settle(nats_url: str, dsn: str, sim: AlpacaSim, date: dt.date, **kw: object) -> RunReport:
    rt = await open_runtime(make_settings(nats_url, dsn, sim.url, symbols=SYMBOLS, **kw))
    try:
        return await rt.settler.run(date)
    finally:
        await rt.close()


async def test_every_settle_published_once_and_rerun_publishes_nothing(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    mbt = Consumer(own_nats)
    report = await settle(own_nats, postgres_dsn, alpaca_sim, D1)
    await mbt.ensure()
    await mbt.consume()
    assert sorted(s.symbol for s in mbt.seen.settles) == sorted(SYMBOLS)
    assert all(s.revision == 1 and not s.stale for s in mbt.seen.settles)
    assert [d.count for d in mbt.seen.done] == [len(SYMBOLS)]
    assert report.count == len(SYMBOLS)
    assert report.published == len(SYMBOLS) + 1  # every settle and the batch marker
    before = await stream_count(own_nats)

    again = await settle(own_nats, postgres_dsn, alpaca_sim, D1)
    assert again.written == 0
    assert again.unchanged == len(SYMBOLS)
    assert await stream_count(own_nats) == before
    await mbt.consume()
    assert len(mbt.seen.settles) == len(SYMBOLS)
    assert len(mbt.seen.done) == 1


async def test_durable_consumer_restarted_mid_batch_gets_every_settle_exactly_once(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    mbt = Consumer(own_nats, ack_wait=1.0)
    rt = await open_runtime(make_settings(own_nats, postgres_dsn, alpaca_sim.url, symbols=SYMBOLS))
    try:
        await mbt.ensure()  # the consumer exists before the batch, as MBT's would
        await rt.settler.run(D1)
    finally:
        await rt.close()
    # First life: fetches 70, processes 40, dies with 30 fetched but unacked.
    fetched = await mbt.consume(max_msgs=70, ack_only=40)
    assert fetched == 70
    assert len(mbt.seen.settles) == 40
    # Restarted consumer: the remaining ones plus the 30 redelivered after ack_wait.
    await asyncio.sleep(1.2)
    await mbt.consume(idle=1.5)
    keys = mbt.seen.keys()
    assert len(keys) == len(set(keys)) == len(SYMBOLS)
    assert len(mbt.seen.done) == 1


async def test_corrected_price_becomes_revision_2_seen_by_consumer(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    mbt = Consumer(own_nats)
    await settle(own_nats, postgres_dsn, alpaca_sim, D1)
    await mbt.ensure()
    await mbt.consume()
    first = {s.symbol: s for s in mbt.seen.settles}
    # Revision 1 of T007 was computed from a bar that upstream has since corrected.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE settles SET price = price + 1 WHERE date = %s AND symbol = 'T007'", (D1,)
        )
    report = await settle(own_nats, postgres_dsn, alpaca_sim, D1)
    assert report.written == 1
    assert report.revised == 1
    await mbt.consume()
    revs = [s for s in mbt.seen.settles if s.symbol == "T007"]
    assert [s.revision for s in revs] == [1, 2]
    assert revs[1].price == first["T007"].price  # the sim's (correct) close
    assert len(mbt.seen.done) == 2  # new content, new marker
    assert mbt.seen.done[1].count == len(SYMBOLS)
    assert mbt.seen.done[1].revised == 1


async def test_stale_carry_forward_and_symbol_without_any_settle(
    own_nats: str, postgres_dsn: str, alpaca_sim_factory: object
) -> None:
    d0 = dt.date(2025, 12, 22)
    sim = alpaca_sim_factory(env={"SIM_HALTED": f"QUIET@{D1.isoformat()}"})  # type: ignore[operator]
    mbt = Consumer(own_nats)
    syms = ["AAPL", "QUIET", "HALTZ"]
    rt = await open_runtime(make_settings(own_nats, postgres_dsn, sim.url, symbols=syms))
    try:
        await mbt.ensure()
        r0 = await rt.settler.run(d0)
        assert r0.missing == ["HALTZ"]  # no print ever, no previous settle: nothing published
        r1 = await rt.settler.run(D1)
        assert r1.missing == ["HALTZ"]
        assert r1.stale == 1
        rows = {r["symbol"]: r for r in await rt.store.settles_for_date(D1)}
    finally:
        await rt.close()
    await mbt.consume()
    by = {(s.date, s.symbol): s for s in mbt.seen.settles}
    assert (d0, "HALTZ") not in by
    assert (D1, "HALTZ") not in by
    quiet = by[(D1, "QUIET")]
    assert quiet.stale
    assert quiet.source == "carried_forward"
    assert quiet.price == by[(d0, "QUIET")].price > Decimal(0)
    assert rows["QUIET"]["stale"] is True
    assert "HALTZ" not in rows
    assert [d.count for d in mbt.seen.done] == [2, 2]


def test_killed_between_write_and_publish_then_restarted_publishes_each_settle_once(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    env = {
        **os.environ,
        "EOD_ENV": "dev",
        "EOD_NATS_URL": own_nats,
        "EOD_DATABASE_URL": postgres_dsn,
        "EOD_ALPACA_DATA_URL": alpaca_sim.url,
        "EOD_ALPACA_TRADING_URL": alpaca_sim.url,
        "EOD_ALPACA_KEY_ID": "sim-key",
        "EOD_ALPACA_SECRET_KEY": "sim-secret",
        "EOD_SYMBOLS": ",".join(SYMBOLS),
        "EOD_BARS_SYMBOLS_PER_REQUEST": "50",  # several write batches
        "EOD_REST_RATE_PER_MIN": "600",
    }
    argv = [sys.executable, "-m", "eod_settler", "run", "--date", D1.isoformat()]
    crashed = subprocess.run(
        argv, env={**env, "EOD_FAULT_POINT": "after_write"}, capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    with psycopg.connect(postgres_dsn) as conn:
        written = conn.execute("SELECT count(*) FROM settles").fetchone()
        pending = conn.execute(
            "SELECT count(*) FROM settle_outbox WHERE published_at IS NULL"
        ).fetchone()
    assert written is not None
    assert pending is not None
    assert 0 < written[0] < len(SYMBOLS)
    assert pending[0] == written[0]

    mbt = Consumer(own_nats)
    restarted = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    asyncio.run(_consume_all(mbt))
    keys = mbt.seen.keys()
    assert len(keys) == len(set(keys)) == len(SYMBOLS)
    assert [d.count for d in mbt.seen.done] == [len(SYMBOLS)]


async def _consume_all(mbt: Consumer) -> None:
    await mbt.ensure()
    await mbt.consume()


async def test_relay_crash_after_publish_before_mark_is_deduplicated(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    await settle(own_nats, postgres_dsn, alpaca_sim, D1)
    before = await stream_count(own_nats)
    # As if the relay died after JetStream acked but before it marked the rows.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE settle_outbox SET published_at = NULL")
    rt = await open_runtime(make_settings(own_nats, postgres_dsn, alpaca_sim.url))
    try:
        assert await rt.relay.drain() == len(SYMBOLS) + 1
        assert await rt.store.outbox_depth() == 0
    finally:
        await rt.close()
    assert await stream_count(own_nats) == before
    assert isinstance(rt.store, Store)
