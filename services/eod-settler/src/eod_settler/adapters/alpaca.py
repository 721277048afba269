"""Alpaca REST through alpaca-py (`url_override`), every request paced by the token bucket.

alpaca-py is synchronous (requests); calls run in worker threads, and each HTTP request (each
page of a paginated call, each 429 retry) first takes a token from the shared async bucket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CorporateActionsType, OptionsFeed
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    CorporateActionsRequest,
    OptionLatestQuoteRequest,
    StockBarsRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import GetCalendarRequest, GetOptionContractsRequest
from pydantic import SecretStr
from raxx_contracts import NanoDatetime
from raxx_contracts.alpaca_plan import RECENT_SIP_SECONDS

from eod_settler.domain import Session, quote_mid, to_decimal
from eod_settler.errors import PermanentError, RetryableError
from eod_settler.metrics import Metrics
from eod_settler.ratelimit import TokenBucket

log = logging.getLogger(__name__)
_OCC = re.compile(r"^(?P<root>[A-Z0-9.]{1,6})(?P<exp>\d{6})(?P<cp>[CP])(?P<strike>\d{8})$")


@dataclass(frozen=True)
class AlpacaCredentials:
    """The market-data key (from Vault, or dev settings); never logged."""

    key_id: SecretStr
    secret_key: SecretStr


def occ_underlying(symbol: str) -> str | None:
    """Underlying root of an OCC option symbol (`AAPL240315C00172500` -> `AAPL`)."""
    m = _OCC.match(symbol)
    return m["root"] if m else None


def _paced(base: type[Any]) -> type[Any]:
    class Paced(base):  # type: ignore[misc]
        before_request: Callable[[], None] = staticmethod(lambda: None)
        endpoint: str = "other"
        on_result: Callable[[str, str], None] = staticmethod(lambda _e, _o: None)

        def _one_request(self, method: str, url: str, opts: dict[str, Any], retry: int) -> Any:
            self.before_request()
            try:
                result = super()._one_request(method, url, opts, retry)
            except APIError as exc:
                self.on_result(self.endpoint, str(exc.status_code or "error"))
                raise
            except Exception:
                self.on_result(self.endpoint, "retry_or_error")
                raise
            self.on_result(self.endpoint, "ok")
            return result

    return Paced


_PacedStock = _paced(StockHistoricalDataClient)
_PacedOption = _paced(OptionHistoricalDataClient)
_PacedTrading = _paced(TradingClient)
_PacedCorpActions = _paced(CorporateActionsClient)


def _classify(exc: Exception, what: str) -> Exception:
    if isinstance(exc, APIError):
        code = exc.status_code or 0
        if code == 429 or code >= 500:
            return RetryableError(f"{what}: HTTP {code}", retry_after=3.0)
        return PermanentError(f"{what}: HTTP {code}: {str(exc)[:200]}")
    if isinstance(exc, requests.RequestException):
        return RetryableError(f"{what}: {type(exc).__name__}")
    return exc


class AlpacaRest:
    """The REST calls the settler makes, async, paced and classified into settler errors."""

    def __init__(
        self,
        creds: AlpacaCredentials,
        data_url: str,
        trading_url: str,
        limiter: TokenBucket,
        metrics: Metrics,
        tz: ZoneInfo,
        feed: str | None = None,
        concurrency: int = 4,
        options_feed: str | None = None,
    ) -> None:
        self._creds = creds
        self._data_url = data_url.rstrip("/")
        self._trading_url = trading_url.rstrip("/")
        self._limiter = limiter
        self._metrics = metrics
        self._tz = tz
        self._feed = feed
        self._options_feed = OptionsFeed(options_feed) if options_feed else None
        self._slots = asyncio.Semaphore(concurrency)

    def _wire(self, client: Any, endpoint: str) -> Any:
        limiter = self._limiter

        def before() -> None:
            limiter.acquire_blocking()
            log.debug("%s request sent", endpoint)

        def on_result(ep: str, outcome: str) -> None:
            self._metrics.rest_calls.labels(ep, outcome).inc()

        client.before_request = before
        client.endpoint = endpoint
        client.on_result = on_result
        return client

    def _key(self) -> tuple[str, str]:
        return self._creds.key_id.get_secret_value(), self._creds.secret_key.get_secret_value()

    async def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        async with self._slots:
            try:
                return await asyncio.to_thread(fn)
            except Exception as exc:
                raise _classify(exc, what) from exc

    async def calendar(self, start: dt.date, end: dt.date) -> list[Session]:
        """Sessions in [start, end] from `/v2/calendar` (half days close at 13:00 ET)."""

        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedTrading(key, secret, raw_data=True, url_override=self._trading_url),
                "calendar",
            )
            return client.get_calendar(GetCalendarRequest(start=start, end=end))

        rows = await self._call("calendar", call)
        out: list[Session] = []
        for row in rows:
            day = dt.date.fromisoformat(row["date"])
            out.append(
                Session(
                    day,
                    dt.datetime.combine(day, _hhmm(row["open"]), self._tz),
                    dt.datetime.combine(day, _hhmm(row["close"]), self._tz),
                )
            )
        return out

    async def daily_closes(self, date: dt.date, symbols: list[str]) -> dict[str, Decimal]:
        """Official daily-bar close of `date` for each symbol that printed (raw adjustment)."""
        start = dt.datetime.combine(date, dt.time(0, 0), self._tz)
        end = start + dt.timedelta(days=1) - dt.timedelta(seconds=1)
        if self._feed == "sip":
            # SIP younger than 15 minutes is refused (403) without real-time SIP: end the window
            # before it (the daily bar, stamped at midnight, is still inside)
            recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=RECENT_SIP_SECONDS + 30)
            end = max(min(end, recent), start)

        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedStock(key, secret, raw_data=True, url_override=self._data_url), "bars"
            )
            kwargs: dict[str, Any] = {}
            if self._feed:
                kwargs["feed"] = self._feed
            req = StockBarsRequest(
                symbol_or_symbols=symbols, timeframe=TimeFrame.Day, start=start, end=end,
                adjustment=Adjustment.RAW, **kwargs,
            )  # fmt: skip
            return client.get_stock_bars(req)

        raw: dict[str, list[dict[str, Any]]] = await self._call("bars", call) or {}
        out: dict[str, Decimal] = {}
        for symbol, bars in raw.items():
            for bar in bars:
                if _bar_date(bar.get("t"), self._tz) == date:
                    price = to_decimal(bar.get("c"))
                    if price is not None:
                        out[symbol] = price
        return out

    async def contract_closes(self, date: dt.date, symbols: list[str]) -> dict[str, Decimal]:
        """`close_price` of held contracts whose `close_price_date` is `date`."""
        wanted = set(symbols)
        roots = sorted({r for s in symbols if (r := occ_underlying(s))})
        out: dict[str, Decimal] = {}
        for i in range(0, len(roots), 100):
            batch = roots[i : i + 100]
            token: str | None = None
            while True:
                page = await self._contracts_page(batch, date, token)
                for c in page.get("option_contracts") or []:
                    sym = c.get("symbol")
                    if sym in wanted and c.get("close_price_date") == date.isoformat():
                        price = to_decimal(c.get("close_price"))
                        if price is not None:
                            out[sym] = price
                token = page.get("next_page_token")
                if not token:
                    break
        return out

    async def _contracts_page(
        self, roots: list[str], date: dt.date, token: str | None
    ) -> dict[str, Any]:
        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedTrading(key, secret, raw_data=True, url_override=self._trading_url),
                "option_contracts",
            )
            req = GetOptionContractsRequest(
                underlying_symbols=roots, expiration_date_gte=date, limit=10_000,
                page_token=token,
            )  # fmt: skip
            return client.get_option_contracts(req)

        result: dict[str, Any] = await self._call("option_contracts", call) or {}
        return result

    async def corporate_actions(
        self, start: dt.date, end: dt.date, symbols: list[str], types: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """`/v1/corporate-actions` for `symbols` in [start, end], every page (alpaca-py follows
        `next_page_token`; each page takes a token from the bucket). Grouped by plural type."""

        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedCorpActions(key, secret, raw_data=True, url_override=self._data_url),
                "corporate_actions",
            )
            req = CorporateActionsRequest(
                symbols=symbols,
                types=[CorporateActionsType(t) for t in types],
                start=start,
                end=end,
            )
            return client.get_corporate_actions(req)

        result: dict[str, list[dict[str, Any]]] = await self._call("corporate_actions", call) or {}
        return result

    async def quote_mids(self, date: dt.date, symbols: list[str]) -> dict[str, Decimal]:
        """Mid of each contract's latest quote, when that quote was stamped on `date`."""
        out: dict[str, Decimal] = {}
        for i in range(0, len(symbols), 100):
            batch = symbols[i : i + 100]

            def call(batch: list[str] = batch) -> Any:
                key, secret = self._key()
                client = self._wire(
                    _PacedOption(key, secret, raw_data=True, url_override=self._data_url),
                    "option_quotes",
                )
                feed = {"feed": self._options_feed} if self._options_feed else {}
                return client.get_option_latest_quote(
                    OptionLatestQuoteRequest(symbol_or_symbols=batch, **feed)
                )

            quotes: dict[str, dict[str, Any]] = await self._call("option_quotes", call) or {}
            for sym, q in quotes.items():
                if _bar_date(q.get("t"), self._tz) != date:
                    continue
                mid = quote_mid(q.get("bp"), q.get("ap"))
                if mid is not None:
                    out[sym] = mid
        return out


def _hhmm(text: str) -> dt.time:
    return dt.time.fromisoformat(text if len(text) > 4 else f"{text[:2]}:{text[2:]}")


def _bar_date(t: object, tz: ZoneInfo) -> dt.date | None:
    if isinstance(t, dt.datetime):
        stamp = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    elif isinstance(t, str):
        try:
            stamp = NanoDatetime.parse(t)
        except ValueError:
            return None
    else:
        return None
    return stamp.astimezone(tz).date()
