"""Alpaca REST through alpaca-py (the only module importing `alpaca`).

alpaca-py's historical clients are sound for REST: they build the documented requests,
authenticate, and parse. They are synchronous (requests), so each call runs in a worker
thread; their blind 429 retry (3 x 3 s, ignoring rate-limit headers) is switched off, so
that our shared token bucket, backoff and 503/Retry-After mapping decide instead. Every
call asks for one page at most (explicit `limit`), so one call = one request = one token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed, OptionsFeed
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    OptionChainRequest,
    StockBarsRequest,
    StockLatestQuoteRequest,
    StockQuotesRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from market_data_hub.adapters.vault import AlpacaKey
from market_data_hub.errors import BadRequestError, RetryableError, UpstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PAGE = 10_000


class RateLimitedError(Exception):
    """Alpaca answered 429; `reset_in` from X-RateLimit-Reset when present."""

    def __init__(self, reset_in: float | None) -> None:
        super().__init__("rate limited")
        self.reset_in = reset_in


def parse_timeframe(text: str) -> TimeFrame:
    """`1Min`, `5Min`, `1Hour`, `1Day`, `1Week`, `1Month` -> alpaca-py TimeFrame (validated)."""
    units = {"Min": TimeFrameUnit.Minute, "T": TimeFrameUnit.Minute, "Hour": TimeFrameUnit.Hour,
             "H": TimeFrameUnit.Hour, "Day": TimeFrameUnit.Day, "D": TimeFrameUnit.Day,
             "Week": TimeFrameUnit.Week, "W": TimeFrameUnit.Week, "Month": TimeFrameUnit.Month,
             "M": TimeFrameUnit.Month}  # fmt: skip
    num = "".join(ch for ch in text if ch.isdigit())
    unit = text[len(num) :]
    if not num or unit not in units:
        raise BadRequestError(f"bad timeframe {text!r}: use e.g. 1Min, 15Min, 1Hour, 1Day")
    try:
        return TimeFrame(int(num), units[unit])
    except ValueError as exc:
        raise BadRequestError(f"bad timeframe {text!r}: {exc}") from None


class AlpacaRest:
    """Blocking alpaca-py clients wrapped as async calls that raise hub errors."""

    def __init__(self, base_url: str, key: AlpacaKey, feed: str, options_feed: str) -> None:
        self.base_url = base_url
        self.feed = DataFeed(feed) if feed in {f.value for f in DataFeed} else DataFeed.IEX
        self.options_feed = OptionsFeed(options_feed)
        self.version = -1
        self.set_key(key)

    def close(self) -> None:
        """Close the HTTP sessions."""
        for client in (getattr(self, "stocks", None), getattr(self, "options", None)):
            session = getattr(client, "_session", None)
            if session is not None:
                session.close()

    def set_key(self, key: AlpacaKey) -> None:
        """(Re)build the clients with `key` (after a rotation)."""
        self.close()
        secret = key.secret_key.get_secret_value()
        self.stocks = StockHistoricalDataClient(
            key.key_id, secret, raw_data=True, url_override=self.base_url
        )
        self.options = OptionHistoricalDataClient(
            key.key_id, secret, raw_data=True, url_override=self.base_url
        )
        for client in (self.stocks, self.options):
            client._retry = 0  # we retry ourselves, honouring the shared token bucket
        self.version = key.version

    async def _call(self, fn: Callable[[], T]) -> T:
        def run() -> T:
            try:
                return fn()
            except APIError as exc:
                status = exc.status_code
                if status == 429:
                    reset = None
                    resp = exc.response
                    if resp is not None and resp.headers.get("Retry-After"):
                        reset = _float(resp.headers["Retry-After"])
                    raise RateLimitedError(reset) from None
                if status in (400, 404, 422):
                    raise BadRequestError(f"Alpaca rejected the request: {_msg(exc)}") from None
                if status is not None and status >= 500:
                    raise RetryableError(f"Alpaca REST answered {status}", 5.0) from None
                raise UpstreamError(f"Alpaca REST answered {status}: {_msg(exc)}") from None
            except (OSError, ValueError) as exc:
                raise RetryableError(f"Alpaca REST unreachable: {type(exc).__name__}") from None

        return await asyncio.to_thread(run)

    async def bars(
        self, symbols: Sequence[str], timeframe: TimeFrame, start: datetime, end: datetime | None,
        limit: int,
    ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
        """Bars per symbol (raw dicts with `t`, `o`, `h`, `l`, `c`, `v`, `n`, `vw`)."""
        req = StockBarsRequest(
            symbol_or_symbols=list(symbols), timeframe=timeframe, start=start, end=end,
            limit=min(limit, MAX_PAGE), feed=self.feed,
        )  # fmt: skip
        out = await self._call(lambda: self.stocks.get_stock_bars(req))
        return dict(out) if out else {}

    async def latest_quote(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote (raw dict) or None."""
        req = StockLatestQuoteRequest(symbol_or_symbols=symbol, feed=self.feed)
        out: Any = await self._call(lambda: self.stocks.get_stock_latest_quote(req))
        return dict(out[symbol]) if out and symbol in out else None

    async def quote_before(
        self, symbol: str, end: datetime, start: datetime
    ) -> dict[str, Any] | None:
        """The last quote at or before `end` (for the delayed path)."""
        req = StockQuotesRequest(
            symbol_or_symbols=symbol, start=start, end=end, limit=1, sort=Sort.DESC, feed=self.feed
        )
        out: Any = await self._call(lambda: self.stocks.get_stock_quotes(req))
        rows = out.get(symbol) if out else None
        return dict(rows[0]) if rows else None

    async def chain(self, underlying: str, expiration_gte: date | None) -> dict[str, Any]:
        """Option chain snapshots keyed by contract symbol."""
        req = OptionChainRequest(
            underlying_symbol=underlying, feed=self.options_feed, expiration_date_gte=expiration_gte
        )
        out = await self._call(lambda: self.options.get_option_chain(req))
        return dict(out) if out else {}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _msg(exc: APIError) -> str:
    try:
        return str(exc.message)
    except Exception:
        return str(exc)[:200]


async def option_daily_bars(
    rest: AlpacaRest, symbols: Sequence[str], day: date
) -> dict[str, list[dict[str, Any]]]:
    """Daily bars of option contracts on `day` (for historical chains)."""
    from alpaca.data.requests import OptionBarsRequest

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    req = OptionBarsRequest(
        symbol_or_symbols=list(symbols)[:100], timeframe=TimeFrame.Day, start=start,
        end=start + timedelta(days=1), limit=MAX_PAGE,
    )  # fmt: skip
    out = await rest._call(lambda: rest.options.get_option_bars(req))
    return dict(out) if out else {}
