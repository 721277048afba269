"""Observe `md.ctl.interest.*.*` (every user's request subject; a plain listener, never a
replier) and record symbols per date."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

from raxx_contracts import DecodeError, InterestRequest, InvalidSymbolError, decode, encode_symbol

from eod_settler.adapters.postgres import Store
from eod_settler.clock import Clock
from eod_settler.domain import Target
from eod_settler.metrics import Metrics

log = logging.getLogger(__name__)


class InterestRecorder:
    """Buffers symbols seen in interest requests and writes them to Postgres in batches."""

    def __init__(self, store: Store, clock: Clock, tz: ZoneInfo, metrics: Metrics) -> None:
        self._store = store
        self._clock = clock
        self._tz = tz
        self._metrics = metrics
        self._pending: set[Target] = set()
        self._seen: set[tuple[str, Target]] = set()

    async def on_request(self, data: bytes) -> None:
        """Handle one `InterestRequest` (decoded; invalid payloads and symbols are skipped)."""
        try:
            req = decode(InterestRequest, data)
        except DecodeError:
            return
        if req.release:
            return
        for sym in req.symbols:
            try:
                encode_symbol(sym)
            except InvalidSymbolError:
                continue
            self._pending.add(Target(sym, req.asset_class))

    async def flush(self) -> int:
        """Write buffered symbols under today's date (exchange time zone)."""
        if not self._pending:
            return 0
        date = self._clock.now().astimezone(self._tz).date()
        batch, self._pending = self._pending, set()
        new = [t for t in batch if (date.isoformat(), t) not in self._seen]
        if not new:
            return 0
        try:
            await self._store.record_universe(date, new, "interest")
        except Exception:
            self._pending |= batch  # keep them for the next flush
            raise
        self._seen.update((date.isoformat(), t) for t in new)
        if len(self._seen) > 200_000:
            self._seen.clear()
        self._metrics.interest_recorded.inc(len(new))
        return len(new)

    async def run_forever(self, every: float) -> None:
        """Flush periodically."""
        while True:
            await asyncio.sleep(every)
            await self.flush()
