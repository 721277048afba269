"""Corporate actions before the open: Alpaca `/v1/corporate-actions` -> Postgres (+outbox) ->
stream CORPACTIONS, with the settles' guarantees (exactly once, revisions, re-runnable)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from raxx_contracts import (
    AssetClass,
    CorporateAction,
    CorporateActionType,
    NanoDatetime,
    encode,
    subjects,
)
from raxx_contracts.symbols import validate_symbol

from eod_settler import domain
from eod_settler.adapters.alpaca import AlpacaRest, occ_underlying
from eod_settler.adapters.postgres import CorpActionRow
from eod_settler.domain import Session, to_decimal
from eod_settler.service import NullProgress, Progress, Settler, retrying

log = logging.getLogger(__name__)

PUBLISHED_TYPES: tuple[CorporateActionType, ...] = (
    CorporateActionType.FORWARD_SPLIT,
    CorporateActionType.REVERSE_SPLIT,
    CorporateActionType.UNIT_SPLIT,
    CorporateActionType.CASH_DIVIDEND,
    CorporateActionType.STOCK_DIVIDEND,
    CorporateActionType.SPIN_OFF,
    CorporateActionType.NAME_CHANGE,
    CorporateActionType.CASH_MERGER,
    CorporateActionType.STOCK_MERGER,
    CorporateActionType.STOCK_AND_CASH_MERGER,
)
"""What MBT must apply to a position before the open (splits, dividends, spin-offs, symbol
changes; Alpaca types symbol changes as name changes and mergers)."""


@dataclass
class CorpActionsReport:
    """What one corporate-actions run did."""

    date: dt.date
    trading_day: bool = True
    symbols: int = 0
    actions: int = 0
    written: int = 0
    revised: int = 0
    unchanged: int = 0
    published: int = 0
    rest_requests: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Normalised:
    """One Alpaca action as the contract carries it (minus revision and timestamps)."""

    symbol: str
    action_id: str
    type: CorporateActionType
    fields: dict[str, Any]

    def content_hash(self) -> str:
        """Hash of everything Alpaca said about the action (a change is a new revision)."""
        text = repr(sorted((k, str(v)) for k, v in self.fields.items()))
        return hashlib.sha256(f"{self.type}|{text}".encode()).hexdigest()


def _date(value: object) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value:
        return dt.date.fromisoformat(value[:10])
    return None


def _dec(value: object) -> Decimal | None:
    return to_decimal(value) if value is not None else None


def normalise(plural: str, raw: Mapping[str, Any]) -> Normalised | None:
    """One raw Alpaca action (`forward_splits` entry and so on) -> Normalised, or None when it
    is a type we do not publish or lacks what MBT needs."""
    try:
        kind = CorporateActionType(plural.removesuffix("s"))
    except ValueError:
        return None
    if kind not in PUBLISHED_TYPES:
        return None
    f: dict[str, Any] = {
        "ex_date": _date(raw.get("ex_date")),
        "record_date": _date(raw.get("record_date")),
        "payable_date": _date(raw.get("payable_date")),
        "effective_date": _date(raw.get("effective_date")),
        "process_date": _date(raw.get("process_date")),
    }
    symbol: object
    if kind in (CorporateActionType.FORWARD_SPLIT, CorporateActionType.REVERSE_SPLIT):
        symbol = raw.get("symbol")
        f |= {"new_rate": _dec(raw.get("new_rate")), "old_rate": _dec(raw.get("old_rate"))}
    elif kind == CorporateActionType.UNIT_SPLIT:
        symbol = raw.get("old_symbol")
        f |= {
            "new_rate": _dec(raw.get("new_rate")), "old_rate": _dec(raw.get("old_rate")),
            "old_symbol": raw.get("old_symbol"), "new_symbol": raw.get("new_symbol"),
        }  # fmt: skip
    elif kind == CorporateActionType.CASH_DIVIDEND:
        symbol = raw.get("symbol")
        f |= {
            "cash_rate": _dec(raw.get("rate")),
            "special": bool(raw.get("special")), "foreign": bool(raw.get("foreign")),
        }  # fmt: skip
    elif kind == CorporateActionType.STOCK_DIVIDEND:
        symbol = raw.get("symbol")
        f |= {"stock_rate": _dec(raw.get("rate"))}
    elif kind == CorporateActionType.SPIN_OFF:
        symbol = raw.get("source_symbol")
        f |= {
            "old_rate": _dec(raw.get("source_rate")), "new_rate": _dec(raw.get("new_rate")),
            "old_symbol": raw.get("source_symbol"), "new_symbol": raw.get("new_symbol"),
        }  # fmt: skip
    elif kind == CorporateActionType.NAME_CHANGE:
        symbol = raw.get("old_symbol")
        f |= {"old_symbol": raw.get("old_symbol"), "new_symbol": raw.get("new_symbol")}
    else:  # mergers: the acquiree's holders are affected
        symbol = raw.get("acquiree_symbol")
        f |= {
            "old_symbol": raw.get("acquiree_symbol"), "new_symbol": raw.get("acquirer_symbol"),
            "old_rate": _dec(raw.get("acquiree_rate")), "new_rate": _dec(raw.get("acquirer_rate")),
            "cash_rate": _dec(raw.get("cash_rate", raw.get("rate"))),
        }  # fmt: skip
    action_id = raw.get("id")
    if not isinstance(symbol, str) or not isinstance(action_id, str) or not action_id:
        return None
    try:
        validate_symbol(symbol)
    except ValueError:
        return None
    return Normalised(symbol, action_id, kind, {k: v for k, v in f.items() if v is not None})


def effective_date(n: Normalised) -> dt.date | None:
    """The session before whose open MBT applies the action: ex-date, else effective date
    (mergers, name changes), else the process date."""
    d = n.fields
    out = d.get("ex_date") or d.get("effective_date") or d.get("process_date")
    return out if isinstance(out, dt.date) else None


class CorpActionsRun:
    """Publishes the corporate actions effective on a date, through the settler's outbox."""

    def __init__(self, settler: Settler) -> None:
        self._settler = settler
        self._s = settler.settings

    async def symbols(self, session_date: dt.date, previous: dt.date | None) -> list[str]:
        """Configured symbols, symbols with interest (the date's and the previous session's
        universe) and the underlyings of the options MBT holds."""
        store = self._settler.store
        out = set(self._s.symbols)
        for day in (session_date, previous):
            if day is None:
                continue
            for t in await store.universe(day):
                if t.asset_class == AssetClass.STOCKS:
                    out.add(t.symbol)
                elif root := occ_underlying(t.symbol):
                    out.add(root)
        for sym in await self._settler.held_options():
            if root := occ_underlying(sym):
                out.add(root)
        return sorted(out)

    async def run(
        self, date: dt.date, progress: Progress | None = None, wait_published: bool = True
    ) -> CorpActionsReport:
        """Publish `date`'s actions (any date, re-runnable); non-trading days publish nothing."""
        progress = progress or NullProgress()
        t0 = time.perf_counter()
        settler = self._settler
        calls0 = settler.limiter.acquired
        acked0 = settler.relay.acked
        report = CorpActionsReport(date)
        sessions = await settler.sessions(date - dt.timedelta(days=10), date)
        today = [s for s in sessions if s.date == date]
        if not today:
            report.trading_day = False
            report.seconds = time.perf_counter() - t0
            report.rest_requests = settler.limiter.acquired - calls0
            log.info("%s is not a trading day: no corporate actions published", date)
            return report
        previous = max((s.date for s in sessions if s.date < date), default=None)
        stop = asyncio.Event()
        relay = asyncio.create_task(settler.relay.run_until(stop, idle_poll=0.5))
        try:
            async with settler.store.date_lock(date, "corpactions"):
                await self._publish(date, today[0], previous, report, progress)
        finally:
            stop.set()
            settler.relay.wake()
            await relay
        if wait_published:
            await settler.wait_published(date)
        report.published = settler.relay.acked - acked0
        report.rest_requests = settler.limiter.acquired - calls0
        report.seconds = time.perf_counter() - t0
        return report

    async def _publish(
        self,
        date: dt.date,
        session: Session,
        previous: dt.date | None,
        report: CorpActionsReport,
        progress: Progress,
    ) -> None:
        settler = self._settler
        rest: AlpacaRest = await settler.rest()
        symbols = await self.symbols(date, previous)
        report.symbols = len(symbols)
        batches = domain.symbol_batches(
            symbols, self._s.corpactions_symbols_per_request, self._s.bars_max_query_bytes
        )
        progress.start("corporate actions", len(symbols))
        wanted = set(symbols)
        pad = dt.timedelta(days=self._s.corpactions_window_days)
        found: dict[tuple[str, str], Normalised] = {}
        for batch in batches:
            raw = await retrying(
                lambda b=batch: rest.corporate_actions(  # type: ignore[misc]
                    date - pad, date + pad, b, [str(t) for t in PUBLISHED_TYPES]
                )
            )
            for plural, items in raw.items():
                for item in items or []:
                    n = normalise(plural, item)
                    if n is None:
                        report.skipped.append(str(item.get("id", plural)))
                        continue
                    if n.symbol in wanted and effective_date(n) == date:
                        found[(n.symbol, n.action_id)] = n
            progress.advance(len(batch))
        report.actions = len(found)
        stored = await settler.store.corpaction_hashes(date)
        now = settler.clock.now()
        now_ns = NanoDatetime.from_datetime(now)
        rows: list[CorpActionRow] = []
        for key, n in sorted(found.items()):
            digest = n.content_hash()
            prev = stored.get(key)
            if prev is not None and prev[1] == digest:
                report.unchanged += 1
                continue
            revision = 1 if prev is None else prev[0] + 1
            msg = CorporateAction(
                symbol=n.symbol, timestamp=now_ns, date=date, action_id=n.action_id,
                type=n.type, revision=revision, computed_at=now_ns, **n.fields,
            )  # fmt: skip
            rows.append(
                CorpActionRow(
                    date=date, symbol=n.symbol, action_id=n.action_id, revision=revision,
                    type=str(n.type), content_hash=digest, computed_at=now,
                    subject=subjects.corpactions(date, n.symbol),
                    msg_id=subjects.corpaction_msg_id(date, n.symbol, n.action_id, revision),
                    payload=encode(msg),
                )
            )  # fmt: skip
            if revision > 1:
                report.revised += 1
        await settler.store.write_corpactions(rows)
        await settler.store.complete_corpactions(date, len(found))
        report.written = len(rows)
        if rows:
            settler.relay.wake()
        log.info(
            "%s corporate actions (session opens %s): %d symbols, %d actions, %d new revisions",
            date, session.open.isoformat(), len(symbols), len(found), len(rows),
        )  # fmt: skip
