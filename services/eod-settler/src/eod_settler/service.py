"""The settle run for one date: targets -> prices -> Postgres (+outbox) -> relay -> done marker."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from raxx_contracts import (
    AssetClass,
    NanoDatetime,
    SettleBatchDone,
    SettleFeed,
    SettleSource,
    encode,
    subjects,
)
from raxx_service_kit.clock import Clock

from eod_settler import domain
from eod_settler.adapters.alpaca import AlpacaCredentials, AlpacaRest, OccContract, occ_contract
from eod_settler.adapters.postgres import SettleRow, Store
from eod_settler.domain import Computed, Session, Target
from eod_settler.errors import NoSettleDateError, NotYetClosedError, RetryableError
from eod_settler.metrics import Metrics
from eod_settler.ratelimit import TokenBucket
from eod_settler.relay import OutboxRelay
from eod_settler.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Progress(Protocol):
    """Where a run reports progress (rich bar on a TTY, log lines otherwise)."""

    def start(self, phase: str, total: int) -> None:
        """A phase begins with `total` units."""

    def advance(self, n: int) -> None:
        """`n` more units done."""


class NullProgress:
    """Progress that goes nowhere (the service's scheduler)."""

    def start(self, phase: str, total: int) -> None:
        """Ignore."""

    def advance(self, n: int) -> None:
        """Ignore."""


@dataclass
class RunReport:
    """What one run did."""

    date: dt.date
    targets: int = 0
    written: int = 0
    unchanged: int = 0
    revised: int = 0
    stale: int = 0
    missing: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    """Revisions written by this run, per `source/feed` (e.g. `auction/sip`)."""
    count: int = 0
    done_enqueued: bool = False
    published: int = 0
    rest_requests: int = 0
    seconds: float = 0.0


class Settler:
    """Computes, stores and (through the outbox relay) publishes the settles of a date."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        relay: OutboxRelay,
        metrics: Metrics,
        clock: Clock,
        credentials: Callable[[], Awaitable[AlpacaCredentials]],
        held_options: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self._s = settings
        self._store = store
        self._relay = relay
        self._metrics = metrics
        self._clock = clock
        self._credentials = credentials
        self._held_options = held_options
        self._tz = ZoneInfo(settings.timezone)
        self.last_success_close = 0.0
        self.limiter = TokenBucket(
            settings.rest_rate_per_min, settings.rest_burst, on_wait=metrics.limiter_wait
        )

    @property
    def settings(self) -> Settings:
        """The settler's settings."""
        return self._s

    @property
    def store(self) -> Store:
        """The settler's Postgres store."""
        return self._store

    @property
    def relay(self) -> OutboxRelay:
        """The outbox relay publishing this settler's rows."""
        return self._relay

    @property
    def clock(self) -> Clock:
        """The settler's clock."""
        return self._clock

    async def held_options(self) -> list[str]:
        """OCC symbols MBT holds right now."""
        return await self._held_options()

    async def rest(self) -> AlpacaRest:
        """A REST adapter with the current key (re-read from Vault, so rotation is picked up)."""
        creds = await self._credentials()
        return AlpacaRest(
            creds, self._s.alpaca_data_url, self._s.alpaca_trading_url, self.limiter,
            self._metrics, self._tz, self._s.alpaca_feed, self._s.rest_concurrency,
            options_feed=self._s.alpaca_options_feed,
        )  # fmt: skip

    async def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Trading sessions in [start, end] from the exchange calendar."""
        return await (await self.rest()).calendar(start, end)

    async def resolve(self, date: dt.date) -> Session:
        """The session of `date`, or a typed error for a future date, a holiday or a weekend."""
        now = self._clock.now()
        if date > now.astimezone(self._tz).date():
            raise NotYetClosedError(date, "date is in the future: no settle yet")
        found = [s for s in await self.sessions(date, date) if s.date == date]
        if not found:
            raise NoSettleDateError(date)
        session = found[0]
        due = session.due_at(self._s.settle_lag_seconds)
        if due > now:
            raise NotYetClosedError(
                date, f"session closes {session.close.isoformat()}; settle due {due.isoformat()}"
            )
        return session

    async def run(
        self, date: dt.date, progress: Progress | None = None, wait_published: bool = True
    ) -> RunReport:
        """Settle `date` (any past trading day); re-running with the same data changes nothing."""
        progress = progress or NullProgress()
        t0 = time.perf_counter()
        calls0 = self.limiter.acquired
        acked0 = self._relay.acked
        session = await self.resolve(date)
        report = RunReport(date)
        stop_relay = asyncio.Event()
        if self._s.fault_point:  # the crash test needs rows written and certainly unpublished
            stop_relay.set()
        relay = asyncio.create_task(self._relay.run_until(stop_relay, idle_poll=0.5))
        try:
            await self._settle(date, session, report, progress)
        finally:
            stop_relay.set()
            self._relay.wake()
            await relay
        if wait_published:
            await self.wait_published(date)
        report.published = self._relay.acked - acked0
        report.rest_requests = self.limiter.acquired - calls0
        report.seconds = time.perf_counter() - t0
        self._metrics.batch_duration.observe(report.seconds)
        if report.missing:
            self._metrics.missing.inc(len(report.missing))
            log.warning(
                "%s: %d symbols with no print and no previous settle (nothing published): %s",
                date, len(report.missing), ", ".join(report.missing[:20]),
            )  # fmt: skip
        return report

    async def _settle(
        self, date: dt.date, session: Session, report: RunReport, progress: Progress
    ) -> None:
        async with self._store.date_lock(date):
            rest = await self.rest()
            targets, new_config, new_held = await self._targets(date)
            report.targets = len(targets)
            stocks = [t for t in targets if t.asset_class == AssetClass.STOCKS]
            options = [t for t in targets if t.asset_class == AssetClass.OPTIONS]
            # Start the rate-limited REST calls first; the DB reads overlap with them.
            fetches = self._start_stock_fetches(rest, date, stocks)
            try:
                await self._store.record_universe(date, new_config, "config")
                await self._store.record_universe(date, new_held, "held_options")
                symbols = [t.symbol for t in targets]
                stored = await self._store.latest_for_date(date, symbols)
                previous = await self._store.previous_prices(date, symbols)
                ctx = _Ctx(session, self._clock.now(), stored, previous, report)
                progress.start("settling", len(targets))
                await self._stocks(ctx, fetches, progress)
            finally:
                for t in fetches:
                    t.cancel()
            await self._options(rest, ctx, options, progress)
            await self._complete(ctx)

    async def wait_published(self, date: dt.date, limit_s: float = 300.0) -> int:
        """Drain the outbox (this process, or another relay holding rows) for `date`."""
        published = 0
        deadline = time.monotonic() + limit_s
        while True:
            published += await self._relay.drain()
            if await self._store.outbox_depth(date) == 0:
                return published
            if time.monotonic() > deadline:
                raise RetryableError(f"{date}: outbox not drained within {limit_s:.0f} s")
            await asyncio.sleep(0.2)

    async def _targets(self, date: dt.date) -> tuple[list[Target], list[Target], list[Target]]:
        """(all targets, configured ones not yet recorded, held ones not yet recorded)."""
        configured = [Target(s, AssetClass.STOCKS) for s in self._s.symbols]
        held = [Target(s, AssetClass.OPTIONS) for s in await self._held_options()]
        recorded = await self._store.universe(date)
        known = {t.symbol for t in recorded}
        seen: dict[str, Target] = {}
        for t in [*configured, *held, *recorded]:
            seen.setdefault(t.symbol, t)
        targets = sorted(seen.values(), key=lambda t: (t.asset_class, t.symbol))
        return (
            targets,
            [t for t in configured if t.symbol not in known],
            [t for t in held if t.symbol not in known],
        )

    def _start_stock_fetches(
        self, rest: AlpacaRest, date: dt.date, stocks: Sequence[Target]
    ) -> list[asyncio.Task[tuple[list[str], dict[str, domain.Primary]]]]:
        groups = domain.symbol_batches(
            [t.symbol for t in stocks],
            self._s.bars_symbols_per_request,
            self._s.bars_max_query_bytes,
        )
        return [asyncio.create_task(self._stock_prices(rest, date, g)) for g in groups]

    async def _stock_prices(
        self, rest: AlpacaRest, date: dt.date, group: list[str]
    ) -> tuple[list[str], dict[str, domain.Primary]]:
        """Official closing auction where there was one, else the daily bar close (SIP)."""
        now = self._clock.now()
        auctions = await retrying(lambda: rest.closing_auctions(date, group, now))
        rest_syms = [s for s in group if s not in auctions]
        closes = (
            await retrying(lambda: rest.daily_closes(date, rest_syms, now)) if rest_syms else {}
        )
        feed = SettleFeed(rest.feed)
        out: dict[str, domain.Primary] = {}
        for sym in group:
            primary = domain.stock_primary(
                auctions.get(sym), closes.get(sym), SettleFeed.SIP if sym in auctions else feed
            )
            if primary is not None:
                out[sym] = primary
        return group, out

    async def _stocks(
        self,
        ctx: _Ctx,
        fetches: list[asyncio.Task[tuple[list[str], dict[str, domain.Primary]]]],
        progress: Progress,
    ) -> None:
        # Write each batch as soon as its bars arrive, while later requests wait on the token
        # bucket: DB writes and publishes overlap the rate-limited REST calls.
        for next_done in asyncio.as_completed(fetches):
            group, prices = await next_done
            log.debug("closes for %d symbols received", len(group))
            computed = [
                domain.choose(
                    Target(sym, AssetClass.STOCKS), prices.get(sym), ctx.previous.get(sym)
                )
                for sym in group
            ]
            for c in computed:
                if c is not None and not c.stale:
                    ctx.underlying[c.symbol] = (c.price, c.feed)
            await self._write(ctx, group, computed)
            log.debug("batch of %d written", len(group))
            progress.advance(len(group))

    async def _options(
        self, rest: AlpacaRest, ctx: _Ctx, options: Sequence[Target], progress: Progress
    ) -> None:
        if not options:
            return
        date = ctx.session.date
        symbols = [t.symbol for t in options]
        expiring = {
            t.symbol: occ for t in options
            if (occ := occ_contract(t.symbol)) is not None and occ.expiration == date
        }  # fmt: skip
        primaries = await self._intrinsic(rest, ctx, expiring)
        live = [s for s in symbols if s not in primaries]
        closes = await retrying(lambda: rest.contract_closes(date, live)) if live else {}
        rest_syms = [s for s in live if s not in closes]
        mids, feed = (
            await retrying(lambda: rest.quote_mids(date, rest_syms)) if rest_syms else ({}, None)
        )
        for sym in live:
            # A contract's own close is Alpaca's OPRA daily close; a mid is from `feed`.
            if sym in closes:
                p = domain.option_primary(closes[sym], None, SettleFeed.OPRA)
            else:
                p = domain.option_primary(None, mids.get(sym), feed)
            if p is not None:
                primaries[sym] = p
        computed = [
            domain.choose(t, primaries.get(t.symbol), ctx.previous.get(t.symbol)) for t in options
        ]
        await self._write(ctx, symbols, computed)
        progress.advance(len(options))

    async def _intrinsic(
        self, rest: AlpacaRest, ctx: _Ctx, expiring: dict[str, OccContract]
    ) -> dict[str, domain.Primary]:
        """Contracts that expired at this session's close: intrinsic from the underlying's settle.

        The underlying's settle of this run is used when it was a target; otherwise its
        official close is read the same way (auction, else daily bar).
        """
        if not expiring:
            return {}
        date = ctx.session.date
        missing = sorted({c.root for c in expiring.values()} - set(ctx.underlying))
        if missing:
            _group, prices = await self._stock_prices(rest, date, missing)
            for sym, (price, _source, feed) in prices.items():
                ctx.underlying[sym] = (price, feed)
        out: dict[str, domain.Primary] = {}
        for sym, occ in expiring.items():
            under = ctx.underlying.get(occ.root)
            if under is None:
                log.warning("%s expired %s but %s has no close: not settled", sym, date, occ.root)
                continue
            value = domain.intrinsic(occ.call, occ.strike, under[0])
            out[sym] = (value, SettleSource.INTRINSIC, under[1])
        return out

    async def _write(
        self, ctx: _Ctx, symbols: Sequence[str], computed: Sequence[Computed | None]
    ) -> None:
        rows: list[SettleRow] = []
        for sym, c in zip(symbols, computed, strict=True):
            if c is None:
                ctx.report.missing.append(sym)
                continue
            revision = domain.next_revision(ctx.stored.get(sym), c)
            if revision is None:
                ctx.report.unchanged += 1
                continue
            rows.append(self._row(ctx, c, revision))
        await self._store.write_settles(rows)
        if rows and self._s.fault_point == "after_write" and self._s.env == "dev":
            log.error("fault point after_write: killing the process before any publish")
            os.kill(os.getpid(), signal.SIGKILL)
        for r in rows:
            self._metrics.written.labels(str(r.source)).inc()
            key = f"{r.source}/{r.feed or '-'}"
            ctx.report.sources[key] = ctx.report.sources.get(key, 0) + 1
            if r.stale:
                self._metrics.stale.inc()
                ctx.report.stale += 1
            if r.revision > 1:
                ctx.report.revised += 1
        ctx.report.written += len(rows)
        if rows:
            self._relay.wake()

    def _row(self, ctx: _Ctx, c: Computed, revision: int) -> SettleRow:
        date = ctx.session.date
        payload = domain.settle_payload(c, date, revision, ctx.close_ns, ctx.computed_ns)
        return SettleRow(
            date=date, symbol=c.symbol, revision=revision, asset_class=c.asset_class,
            price=c.price, source=c.source, feed=c.feed, stale=c.stale,
            session_close=ctx.session.close,
            computed_at=ctx.computed_at, subject=subjects.settle(c.asset_class, date, c.symbol),
            msg_id=subjects.settle_msg_id(date, c.symbol, revision), payload=payload,
        )  # fmt: skip

    async def _complete(self, ctx: _Ctx) -> None:
        date = ctx.session.date
        latest = await self._store.latest_revisions(date)
        revisions = {s: r for s, (r, _stale) in latest.items()}
        stale = sum(1 for _r, st in latest.values() if st)
        msg_id = domain.done_msg_id(date, revisions)
        done = SettleBatchDone(
            timestamp=NanoDatetime.from_datetime(ctx.session.close), date=date,
            count=len(latest), stale=stale, revised=ctx.report.revised, run_id=msg_id,
        )  # fmt: skip
        ctx.report.count = len(latest)
        ctx.report.done_enqueued = await self._store.complete_date(
            date, ctx.session.close, len(latest), stale, subjects.settle_done(date), msg_id,
            encode(done),
        )  # fmt: skip
        self._relay.wake()
        close_ts = ctx.session.close.timestamp()
        current = self._metrics.last_success._value.get()
        self._metrics.last_success.set(max(current, close_ts))


@dataclass
class _Ctx:
    session: Session
    computed_at: dt.datetime
    stored: dict[str, domain.Stored]
    previous: dict[str, Decimal]
    report: RunReport
    underlying: dict[str, tuple[Decimal, SettleFeed | None]] = field(default_factory=dict)
    """Stock settles of this run (price, feed): the underlyings of expiring options."""

    def __post_init__(self) -> None:
        self.close_ns = NanoDatetime.from_datetime(self.session.close)
        self.computed_ns = NanoDatetime.from_datetime(self.computed_at)


async def retrying(fn: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """Call `fn`, retrying RetryableError with exponential backoff (honours retry_after)."""
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except RetryableError as exc:
            if attempt == attempts:
                raise
            wait = max(delay, exc.retry_after or 0.0)
            log.warning("retryable (%s); attempt %d/%d in %.1f s", exc, attempt, attempts, wait)
            await asyncio.sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")
