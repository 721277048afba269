"""eod-settler corporate actions: Alpaca (alpaca-sim) -> outbox -> stream CORPACTIONS, exactly
once, revisions, non-trading days, the CLI; real nats-server, PostgreSQL and alpaca-sim."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest
from eod_settler.corpactions import CorpActionsReport
from eod_settler.domain import Target
from eod_settler.metrics import Metrics
from eod_settler.scheduler import Scheduler
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig
from nats.js.errors import FetchTimeoutError
from raxx_contracts import (
    AssetClass,
    CorporateAction,
    CorporateActionType,
    HeldOptionContract,
    NanoDatetime,
    decode,
    encode,
    encode_symbol,
    subjects,
)
from raxx_service_kit.clock import ManualClock

from tests.integration.fixtures.servers import AlpacaSim
from tests.integration.test_settler_helpers import make_settings, open_runtime

pytestmark = pytest.mark.integration

EX = dt.date(2026, 1, 5)  # the sim's seeded AAPL 4:1 split and $0.26 dividend
PREV = dt.date(2026, 1, 2)  # the session before it
KEYS = {"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"}


async def read_all(url: str) -> list[tuple[str, dict[str, str], CorporateAction]]:
    """Every message in stream CORPACTIONS: (subject, headers, action)."""
    nc = await nats.connect(url)
    out: list[tuple[str, dict[str, str], CorporateAction]] = []
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subjects.CORPACTIONS_ANY, stream=subjects.CORPACTIONS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )  # fmt: skip
        while True:
            try:
                msgs = await sub.fetch(100, timeout=1.0)
            except (FetchTimeoutError, TimeoutError):
                break
            out += [
                (m.subject, dict(m.headers or {}), decode(CorporateAction, m.data)) for m in msgs
            ]
        await sub.unsubscribe()
    finally:
        await nc.close()
    return out


async def run(nats_url: str, dsn: str, sim_url: str, date: dt.date, **kw: Any) -> CorpActionsReport:
    rt = await open_runtime(make_settings(nats_url, dsn, sim_url, **kw))
    try:
        return await rt.corpactions.run(date)
    finally:
        await rt.close()


async def record_interest(nats_url: str, dsn: str, sim_url: str, date: dt.date, *syms: str) -> None:
    rt = await open_runtime(make_settings(nats_url, dsn, sim_url))
    try:
        await rt.store.record_universe(
            date, [Target(s, AssetClass.STOCKS) for s in syms], "interest"
        )
    finally:
        await rt.close()


async def test_split_and_dividend_of_a_symbol_with_interest_published_once(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    # AAPL has interest only (no configured symbols): the previous session's universe.
    await record_interest(own_nats, postgres_dsn, alpaca_sim.url, PREV, "AAPL", "T001")
    report = await run(own_nats, postgres_dsn, alpaca_sim.url, EX)
    assert report.trading_day
    assert (report.symbols, report.actions, report.written, report.published) == (2, 2, 2, 2)
    msgs = await read_all(own_nats)
    assert (
        {m[0] for m in msgs}
        == {subjects.corpactions(EX, "AAPL")}
        == {"md.corpactions.2026-01-05.AAPL"}
    )
    by_type = {a.type: a for _s, _h, a in msgs}
    split = by_type[CorporateActionType.FORWARD_SPLIT]
    assert (split.new_rate, split.old_rate, split.revision) == (Decimal(4), Decimal(1), 1)
    assert (split.ex_date, split.record_date, split.payable_date) == (
        EX, dt.date(2025, 12, 29), dt.date(2026, 1, 2),
    )  # fmt: skip
    div = by_type[CorporateActionType.CASH_DIVIDEND]
    assert div.cash_rate == Decimal("0.26")
    assert (div.ex_date, div.record_date, div.payable_date) == (
        EX, EX, dt.date(2026, 1, 12),
    )  # fmt: skip
    assert all(
        h["Nats-Msg-Id"] == subjects.corpaction_msg_id(EX, "AAPL", a.action_id, 1)
        for _s, h, a in msgs
    )
    # Re-run: nothing new written, nothing new on the stream.
    again = await run(own_nats, postgres_dsn, alpaca_sim.url, EX)
    assert (again.actions, again.written, again.unchanged, again.published) == (2, 0, 2, 0)
    assert len(await read_all(own_nats)) == 2


async def test_held_option_underlying_and_symbol_change(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    # MBT holds a TSLA option (its KV bucket) and MSFT is configured: 2026-01-06 has TSLA's
    # 1:10 reverse split and MSFT's change of symbol to MSFX.
    nc = await nats.connect(own_nats)
    try:
        kv = await nc.jetstream().create_key_value(
            KeyValueConfig(bucket=subjects.HELD_OPTIONS_BUCKET)
        )
        occ = "TSLA260116C00400000"
        held = HeldOptionContract(symbol=occ, timestamp=NanoDatetime.from_datetime(
            dt.datetime(2026, 1, 5, tzinfo=dt.UTC)))  # fmt: skip
        await kv.put(encode_symbol(occ), encode(held))
    finally:
        await nc.close()
    day = dt.date(2026, 1, 6)
    report = await run(own_nats, postgres_dsn, alpaca_sim.url, day, symbols=["MSFT"])
    assert report.written == 2
    got = {a.symbol: a for _s, _h, a in await read_all(own_nats)}
    rs = got["TSLA"]
    assert (rs.type, rs.new_rate, rs.old_rate) == (
        CorporateActionType.REVERSE_SPLIT, Decimal(1), Decimal(10),
    )  # fmt: skip
    nc_ = got["MSFT"]
    assert (nc_.type, nc_.old_symbol, nc_.new_symbol) == (
        CorporateActionType.NAME_CHANGE, "MSFT", "MSFX",
    )  # fmt: skip


async def test_changed_action_becomes_revision_2_exactly_once(
    own_nats: str, postgres_dsn: str, alpaca_sim_factory: Any
) -> None:
    sim: AlpacaSim = alpaca_sim_factory()
    first = await run(own_nats, postgres_dsn, sim.url, EX, symbols=["AAPL"])
    assert first.written == 2
    async with httpx.AsyncClient(base_url=sim.url, headers=KEYS) as http:
        body = (
            await http.get(
                "/v1/corporate-actions",
                params={
                    "symbols": "AAPL",
                    "types": "cash_dividend",
                    "start": "2026-01-05",
                    "end": "2026-01-05",
                },
            )
        ).json()
        (div,) = body["corporate_actions"]["cash_dividends"]
        r = await http.post("/sim/corporate-actions", json={"type": "cash_dividend", **div,
                                                            "rate": 0.27})  # fmt: skip
        assert r.status_code == 200, r.text
    second = await run(own_nats, postgres_dsn, sim.url, EX, symbols=["AAPL"])
    assert (second.written, second.revised, second.unchanged, second.published) == (1, 1, 1, 1)
    third = await run(own_nats, postgres_dsn, sim.url, EX, symbols=["AAPL"])
    assert (third.written, third.published) == (0, 0)
    msgs = await read_all(own_nats)
    divs = [(a.revision, a.cash_rate) for _s, _h, a in msgs if a.action_id == div["id"]]
    assert divs == [(1, Decimal("0.26")), (2, Decimal("0.27"))]
    assert len(msgs) == 3


async def test_non_trading_day_publishes_nothing_and_cli_says_so_and_shows_progress(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:
    saturday = dt.date(2026, 1, 3)
    report = await run(own_nats, postgres_dsn, alpaca_sim.url, saturday, symbols=["AAPL"])
    assert not report.trading_day
    assert (report.written, report.published) == (0, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOD_")} | {
        "EOD_ENV": "dev", "EOD_NATS_URL": own_nats, "EOD_DATABASE_URL": postgres_dsn,
        "EOD_ALPACA_DATA_URL": alpaca_sim.url, "EOD_ALPACA_TRADING_URL": alpaca_sim.url,
        "EOD_ALPACA_KEY_ID": "sim-key", "EOD_ALPACA_SECRET_KEY": "sim-secret",
        "EOD_SYMBOLS": "AAPL,MSFT,T001",
    }  # fmt: skip

    def cli(date: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eod_settler", "corpactions", "--date", date],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    sat = await asyncio.to_thread(cli, "2026-01-03")
    assert sat.returncode == 0, sat.stderr
    assert "2026-01-03: not a trading day; no corporate actions published" in sat.stdout
    ok = await asyncio.to_thread(cli, "2026-01-05")
    assert ok.returncode == 0, ok.stderr
    assert "corporate actions: 3 symbols" in ok.stderr
    assert "progress 3/3 symbols" in ok.stderr
    assert "2026-01-05: 2 corporate actions for 3 symbols; this run wrote 2" in ok.stdout
    assert "published 2 messages" in ok.stdout
    assert len(await read_all(own_nats)) == 2


async def test_scheduler_publishes_at_eight_new_york_on_trading_days_only(
    own_nats: str, postgres_dsn: str, alpaca_sim: AlpacaSim
) -> None:

    ny = ZoneInfo("America/New_York")
    settings = make_settings(
        own_nats, postgres_dsn, alpaca_sim.url, symbols=["AAPL"], catchup_sessions=0
    )
    rt = await open_runtime(settings)
    try:
        clock = ManualClock(dt.datetime(2026, 1, 3, 8, 30, tzinfo=ny))  # Saturday
        sched = Scheduler(settings, rt.settler, rt.store, clock, Metrics(), rt.corpactions)
        await sched.tick()
        assert not await rt.store.corpactions_complete(dt.date(2026, 1, 3))
        clock.set(dt.datetime(2026, 1, 5, 7, 59, tzinfo=ny))  # Monday, before 08:00
        wait = await sched.tick()
        assert 0.5 <= wait <= 61  # wakes up for 08:00 (or the poll interval)
        assert not await rt.store.corpactions_complete(EX)
        assert await read_all(own_nats) == []
        clock.set(dt.datetime(2026, 1, 5, 8, 0, 5, tzinfo=ny))
        await sched.tick()
        assert await rt.store.corpactions_complete(EX)
        assert len(await read_all(own_nats)) == 2
        calls = rt.settler.limiter.acquired
        clock.set(dt.datetime(2026, 1, 5, 9, 0, tzinfo=ny))
        await sched.tick()  # already done today: no second run
        assert rt.settler.limiter.acquired == calls
        assert len(await read_all(own_nats)) == 2
    finally:
        await rt.close()
