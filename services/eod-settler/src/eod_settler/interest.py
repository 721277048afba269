"""Symbols with interest: read from what the hub holds upstream, recorded per date.

The hub's leader shares the set Alpaca acknowledged for its one upstream connection in KV
(`subjects.HUB_INTEREST_BUCKET`, key `subjects.upstream_held_key(asset)`, contract
`UpstreamHeld`). That set only contains symbols the hub accepted under every user's quotas
and the plan's cap, so it is bounded whatever users send. The settler never reads users'
interest requests themselves: a request may name anything (1,000 symbols, refused or not),
and taking it as "interest" would let one user grow every settle run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from raxx_contracts import (
    AssetClass,
    DecodeError,
    InvalidSymbolError,
    UpstreamHeld,
    decode,
    encode_symbol,
)
from raxx_service_kit.clock import Clock

from eod_settler.adapters.postgres import Store
from eod_settler.domain import Target
from eod_settler.metrics import Metrics

log = logging.getLogger(__name__)

HeldReader = Callable[[AssetClass], Awaitable[bytes | None]]
"""Reads the raw `UpstreamHeld` record of an asset class (None when absent)."""


class InterestRecorder:
    """Polls the hub's acknowledged upstream set and writes new symbols to Postgres."""

    def __init__(
        self, store: Store, clock: Clock, tz: ZoneInfo, metrics: Metrics, read_held: HeldReader
    ) -> None:
        self._read_held = read_held
        self._store = store
        self._clock = clock
        self._tz = tz
        self._metrics = metrics
        self._pending: set[Target] = set()
        self._seen: set[tuple[str, Target]] = set()

    async def poll(self) -> None:
        """Buffer the symbols the hub holds upstream now (every asset class)."""
        for asset in AssetClass:
            data = await self._read_held(asset)
            if not data:
                continue
            try:
                held = decode(UpstreamHeld, data).held
            except DecodeError:
                log.warning("unreadable upstream set of %s in the hub's interest bucket", asset)
                continue
            for sym in held:
                try:
                    encode_symbol(sym)
                except InvalidSymbolError:
                    continue
                self._pending.add(Target(sym, asset))

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
        """Poll and flush periodically."""
        while True:
            await asyncio.sleep(every)
            await self.poll()
            await self.flush()
