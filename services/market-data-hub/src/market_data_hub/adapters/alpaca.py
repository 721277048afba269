"""Alpaca REST through alpaca-py (the only module importing `alpaca`).

alpaca-py's historical clients are sound for REST: they build the documented requests,
authenticate, and parse. They are synchronous (requests), so each call runs in a worker
thread; their blind 429 retry (3 x 3 s, ignoring rate-limit headers) is switched off, so
that our shared token bucket, backoff and 503/Retry-After mapping decide instead. Every
call asks for one page at most (explicit `limit`, or `chain_page` for the option chain, which
alpaca-py would otherwise follow to the end), so one call = one request = one token.

Feeds: history uses SIP whenever the plan allows it (real-time SIP, or a window that ended 15
minutes ago: free on every plan), else IEX; never `delayed_sip`, which Alpaca accepts only on
streams and latest/snapshot endpoints. Latest quotes use the stream's feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from raxx_contracts.alpaca_plan import history_feed

from market_data_hub.adapters.vault import AlpacaKey
from market_data_hub.domain.horizon import Timeframe, Unit
from market_data_hub.domain.horizon import parse_timeframe as parse_hub_timeframe
from market_data_hub.domain.ratelimit import retry_wait
from market_data_hub.errors import (
    BadRequestError,
    NotEntitledError,
    NotFoundError,
    RetryableError,
    UpstreamError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PAGE = 10_000
CHAIN_PAGE = 1000
"""Contracts per option-chain page (Alpaca's maximum)."""
LATEST_FEEDS = frozenset({"iex", "sip", "delayed_sip"})
PROBE_SYMBOL = "SPY"


class RateLimitedError(Exception):
    """Alpaca answered 429; `reset_in` from X-RateLimit-Reset when present."""

    def __init__(self, reset_in: float | None) -> None:
        super().__init__("rate limited")
        self.reset_in = reset_in


_UNITS = {Unit.MINUTE: TimeFrameUnit.Minute, Unit.HOUR: TimeFrameUnit.Hour,
          Unit.DAY: TimeFrameUnit.Day, Unit.WEEK: TimeFrameUnit.Week,
          Unit.MONTH: TimeFrameUnit.Month}  # fmt: skip


def alpaca_timeframe(tf: Timeframe) -> TimeFrame:
    """The hub's Timeframe as alpaca-py's TimeFrame."""
    return TimeFrame(tf.amount, _UNITS[tf.unit])


def parse_timeframe(text: str) -> TimeFrame:
    """`1Min`, `5Min`, `1Hour`, `1Day`, `1Week`, `1Month` -> alpaca-py TimeFrame (validated)."""
    return alpaca_timeframe(parse_hub_timeframe(text))


class AlpacaRest:
    """Blocking alpaca-py clients wrapped as async calls that raise hub errors."""

    def __init__(
        self, base_url: str, key: AlpacaKey, feed: str, options_feed: str, realtime_sip: bool
    ) -> None:
        self.base_url = base_url
        self.feed = DataFeed(feed) if feed in LATEST_FEEDS else DataFeed.IEX
        """Feed of latest/snapshot calls: the stream's (`delayed_sip` is valid there)."""
        self.options_feed = OptionsFeed(options_feed)
        self.realtime_sip = realtime_sip
        """Whether the key may read SIP of the last 15 minutes (the plan, then the probe)."""
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
                    resp = exc.response
                    headers = resp.headers if resp is not None else {}
                    raise RateLimitedError(
                        retry_wait(headers.get("Retry-After"), headers.get("X-RateLimit-Reset"))
                    ) from None
                # Callers see a fixed message; Alpaca's text (or a proxy's page) goes to the log.
                detail = f"Alpaca REST answered {status}: {_msg(exc)}"
                if status == 403:
                    raise NotEntitledError(
                        "the market-data provider refused the hub's request (plan)", detail=detail
                    ) from None
                if status in (400, 422):
                    raise BadRequestError(
                        "the market-data provider rejected the request "
                        "(check the symbol, timeframe and dates)",
                        detail=detail,
                    ) from None
                if status == 404:
                    raise NotFoundError(
                        "the market-data provider has no such data", detail=detail
                    ) from None
                if status is not None and status >= 500:
                    raise RetryableError(
                        "the market-data provider is failing; try again shortly", 5.0,
                        detail=detail,
                    ) from None  # fmt: skip
                raise UpstreamError(
                    "the market-data provider refused the hub's request", detail=detail
                ) from None
            except (OSError, ValueError) as exc:
                raise RetryableError(
                    "the market-data provider is unreachable; try again shortly", 5.0,
                    detail=f"Alpaca REST unreachable: {type(exc).__name__}: {exc}"[:500],
                ) from None  # fmt: skip

        return await asyncio.to_thread(run)

    def history_feed(self, end: datetime | None) -> str:
        """SIP when the plan allows it for a window ending at `end` (None = now), else IEX."""
        now = time.time()
        return history_feed(end.timestamp() if end else now, now, self.realtime_sip)

    async def bars(
        self, symbols: Sequence[str], timeframe: TimeFrame, start: datetime, end: datetime | None,
        limit: int, feed: str,
    ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
        """Bars per symbol (raw dicts with `t`, `o`, `h`, `l`, `c`, `v`, `n`, `vw`) from `feed`
        (`iex` or `sip`; see `history_feed`)."""
        req = StockBarsRequest(
            symbol_or_symbols=list(symbols), timeframe=timeframe, start=start, end=end,
            limit=min(limit, MAX_PAGE), feed=DataFeed(feed),
        )  # fmt: skip
        out = await self._call(lambda: self.stocks.get_stock_bars(req))
        return dict(out) if out else {}

    async def probe_realtime_sip(self) -> bool:
        """Whether the key may read SIP of the last minutes: a 5-minute `feed=sip` bars request
        answers 403 on Basic. Other failures raise (the answer is then unknown)."""
        end = datetime.now(UTC)
        req = StockBarsRequest(
            symbol_or_symbols=[PROBE_SYMBOL], timeframe=TimeFrame.Minute,
            start=end - timedelta(minutes=5), end=end, limit=1, feed=DataFeed.SIP,
        )  # fmt: skip
        try:
            await self._call(lambda: self.stocks.get_stock_bars(req))
        except NotEntitledError:
            return False
        return True

    async def bars_page(
        self, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime | None,
        page_token: str | None, feed: str,
    ) -> tuple[dict[str, list[dict[str, Any]]], str | None]:  # fmt: skip
        """One page (one request) of multi-symbol bars from `feed` (`iex` or `sip`; see
        `history_feed`): (bars per symbol, next page token).

        Alpaca's `limit` counts bars across all symbols and pages are sorted by symbol, so a
        caller that needs every symbol must follow the token until it is None.
        """
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "timeframe": timeframe,
            "start": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "limit": MAX_PAGE,
            "feed": DataFeed(feed).value,
            "adjustment": "raw",
        }
        if end is not None:
            params["end"] = end.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if page_token:
            params["page_token"] = page_token
        body: Any = await self._call(lambda: self.stocks.get("/stocks/bars", params))
        if not isinstance(body, dict):
            return {}, None
        bars = body.get("bars") or {}
        token = body.get("next_page_token") or None
        return ({k: list(v) for k, v in bars.items()} if isinstance(bars, dict) else {}), token

    async def latest_quote(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote (raw dict) or None."""
        req = StockLatestQuoteRequest(symbol_or_symbols=symbol, feed=self.feed)
        out: Any = await self._call(lambda: self.stocks.get_stock_latest_quote(req))
        return dict(out[symbol]) if out and symbol in out else None

    async def quote_before(
        self, symbol: str, end: datetime, start: datetime
    ) -> tuple[dict[str, Any] | None, str]:
        """The last quote at or before `end` (for the delayed path) and the feed it came from."""
        feed = self.history_feed(end)
        req = StockQuotesRequest(
            symbol_or_symbols=symbol, start=start, end=end, limit=1, sort=Sort.DESC,
            feed=DataFeed(feed),
        )  # fmt: skip
        out: Any = await self._call(lambda: self.stocks.get_stock_quotes(req))
        rows = out.get(symbol) if out else None
        return (dict(rows[0]) if rows else None), feed

    async def chain_page(
        self, underlying: str, expiration_gte: date | None, page_token: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """One page of option-chain snapshots (keyed by contract) and the next page's token.
        One request: the caller charges the budget per page."""
        req = OptionChainRequest(
            underlying_symbol=underlying, feed=self.options_feed, expiration_date_gte=expiration_gte
        )
        params = req.to_request_fields()
        del params["underlying_symbol"]
        params["limit"] = CHAIN_PAGE
        if page_token:
            params["page_token"] = page_token
        path = f"/options/snapshots/{underlying}"
        out: Any = await self._call(lambda: self.options.get(path, params))
        if not isinstance(out, dict):
            return {}, None
        snaps = out.get("snapshots") or {}
        return dict(snaps), out.get("next_page_token") or None

    async def option_daily_bars(
        self, symbols: Sequence[str], day: date
    ) -> dict[str, list[dict[str, Any]]]:
        """Daily bars of option contracts on `day` (for historical chains)."""
        from alpaca.data.requests import OptionBarsRequest

        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        req = OptionBarsRequest(
            symbol_or_symbols=list(symbols)[:100], timeframe=TimeFrame.Day, start=start,
            end=start + timedelta(days=1), limit=MAX_PAGE,
        )  # fmt: skip
        out = await self._call(lambda: self.options.get_option_bars(req))
        return dict(out) if out else {}


def _msg(exc: APIError) -> str:
    try:
        return str(exc.message)[:300]
    except Exception:
        return str(exc)[:300]
