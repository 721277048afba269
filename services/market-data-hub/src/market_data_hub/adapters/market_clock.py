"""Is the market open? Alpaca's trading-API `/v2/clock`, polled, for the silence check.

An upstream that is silent at 03:00 or on a holiday is normal; silent for the watchdog period
while the market is open, it is not serving. `/v2/clock` gives `is_open`, `next_open` and
`next_close` by the exchange calendar (holidays, half days); between polls the answer is
derived from those two instants, so a poll every few minutes is exact at the bell.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import httpx

from market_data_hub.adapters.vault import KeySource
from market_data_hub.aio import raise_if_cancelling

log = logging.getLogger(__name__)


class MarketClock:
    """Cached market open/closed state; `run()` keeps it fresh."""

    def __init__(self, trading_url: str, keys: KeySource, poll_seconds: float = 300.0) -> None:
        self.url = f"{trading_url.rstrip('/')}/v2/clock"
        self.keys = keys
        self.poll_seconds = poll_seconds
        self._open: bool | None = None
        self._next_open: float | None = None
        self._next_close: float | None = None

    def is_open(self, now_s: float) -> bool | None:
        """Whether the market is open at `now_s` (epoch seconds); None when never learned."""
        if self._open is None:
            return None
        if self._open:
            return self._next_close is None or now_s < self._next_close
        return (
            self._next_open is not None
            and now_s >= self._next_open
            and (self._next_close is None or now_s < self._next_close)
        )

    async def refresh(self, client: httpx.AsyncClient) -> None:
        """Read `/v2/clock` once."""
        key = self.keys.key
        if key is None:
            return
        headers = {
            "APCA-API-KEY-ID": key.key_id,
            "APCA-API-SECRET-KEY": key.secret_key.get_secret_value(),
        }
        r = await client.get(self.url, headers=headers)
        r.raise_for_status()
        body = r.json()
        self._next_open = datetime.fromisoformat(body["next_open"]).timestamp()
        self._next_close = datetime.fromisoformat(body["next_close"]).timestamp()
        self._open = bool(body["is_open"])

    async def run(self) -> None:
        """Poll forever; a failed poll keeps the last answer (logged)."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                raise_if_cancelling()
                try:
                    await self.refresh(client)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    log.warning("market clock unavailable: %s", type(exc).__name__)
                await asyncio.sleep(self.poll_seconds)
