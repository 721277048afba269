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
from alpaca.data.enums import Adjustment, CorporateActionsType, DataFeed, OptionsFeed
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
from alpaca.trading.enums import AssetStatus
from alpaca.trading.requests import GetCalendarRequest, GetOptionContractsRequest
from pydantic import SecretStr
from raxx_contracts import NanoDatetime, SettleFeed

from eod_settler.domain import Session, quote_mid, to_decimal
from eod_settler.errors import NotEntitledError, PermanentError, RetryableError
from eod_settler.metrics import Metrics
from eod_settler.ratelimit import TokenBucket

log = logging.getLogger(__name__)
SIP_DELAY = dt.timedelta(minutes=15)
"""History at least this old may be read from SIP on every plan (Basic included)."""
_OCC = re.compile(r"^(?P<root>[A-Z0-9.]{1,6})(?P<exp>\d{6})(?P<cp>[CP])(?P<strike>\d{8})$")


@dataclass(frozen=True)
class AlpacaCredentials:
    """The market-data key (from Vault, or dev settings); never logged."""

    key_id: SecretStr
    secret_key: SecretStr


def official_close(closing: list[dict[str, Any]]) -> Decimal | None:
    """The listing market's official close among a day's closing auction prints (`c == "M"`).

    Corrections are listed again with their own timestamp; the latest `M` print wins.
    """
    official = [a for a in closing if a.get("c") == "M" and to_decimal(a.get("p")) is not None]
    if not official:
        return None
    latest = max(official, key=lambda a: str(a.get("t") or ""))
    return to_decimal(latest.get("p"))


@dataclass(frozen=True, slots=True)
class OccContract:
    """The parts of an OCC option symbol."""

    root: str
    expiration: dt.date
    call: bool
    strike: Decimal


def occ_contract(symbol: str) -> OccContract | None:
    """Parse `AAPL240315C00172500`; None when it is not an OCC symbol."""
    m = _OCC.match(symbol)
    if m is None:
        return None
    exp = m["exp"]
    try:
        expiration = dt.date(2000 + int(exp[:2]), int(exp[2:4]), int(exp[4:]))
    except ValueError:
        return None
    return OccContract(m["root"], expiration, m["cp"] == "C", Decimal(int(m["strike"])) / 1000)


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
        if code == 403:
            return NotEntitledError(f"{what}: HTTP 403: {str(exc)[:200]}")
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
        feed: str = "sip",
        concurrency: int = 4,
        options_feed: str = "opra",
    ) -> None:
        self._creds = creds
        self._data_url = data_url.rstrip("/")
        self._trading_url = trading_url.rstrip("/")
        self._limiter = limiter
        self._metrics = metrics
        self._tz = tz
        self.feed = feed
        """Feed of stock history requests (SIP: free on every plan once 15 minutes old)."""
        self._slots = asyncio.Semaphore(concurrency)
        self.options_feed = options_feed
        """`opra` until the key answers 403 for it, then `indicative` (Basic)."""

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

    def _window(self, date: dt.date, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """[midnight, min(day end, now - 15 min)] of `date`: SIP that old is free on every plan.
        In the first 15 minutes of `date` the window is empty (end before start): callers read
        nothing then, since Alpaca refuses such a request (422)."""
        start = dt.datetime.combine(date, dt.time(0, 0), self._tz)
        day_end = start + dt.timedelta(days=1) - dt.timedelta(seconds=1)
        return start, min(day_end, now - SIP_DELAY)

    async def daily_closes(
        self, date: dt.date, symbols: list[str], now: dt.datetime
    ) -> dict[str, Decimal]:
        """Daily-bar close of `date` for each symbol that printed (raw adjustment, `self.feed`)."""
        start, end = self._window(date, now)
        if end < start:
            return {}

        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedStock(key, secret, raw_data=True, url_override=self._data_url), "bars"
            )
            req = StockBarsRequest(
                symbol_or_symbols=symbols, timeframe=TimeFrame.Day, start=start, end=end,
                adjustment=Adjustment.RAW, feed=DataFeed(self.feed),
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

    async def closing_auctions(
        self, date: dt.date, symbols: list[str], now: dt.datetime
    ) -> dict[str, Decimal]:
        """The official closing auction price of `date` (condition `M`), per symbol that had one.

        `GET /v2/stocks/auctions` (alpaca-py has no client method for it; the paced client's
        raw GET keeps the token bucket and error mapping). Only `feed=sip` is valid there.
        """
        start, end = self._window(date, now)
        out: dict[str, Decimal] = {}
        if end < start:
            return out
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "symbols": ",".join(symbols), "start": start.isoformat(),
                "end": end.isoformat(), "feed": "sip", "limit": 10_000,
            }  # fmt: skip
            if token:
                params["page_token"] = token

            def call(params: dict[str, Any] = params) -> Any:
                key, secret = self._key()
                client = self._wire(
                    _PacedStock(key, secret, raw_data=True, url_override=self._data_url),
                    "auctions",
                )
                return client.get("/stocks/auctions", params)

            page: dict[str, Any] = await self._call("auctions", call) or {}
            for symbol, days in (page.get("auctions") or {}).items():
                for day in days or []:
                    if day.get("d") != date.isoformat():
                        continue
                    price = official_close(day.get("c") or [])
                    if price is not None:
                        out[symbol] = price
            token = page.get("next_page_token")
            if not token:
                return out

    async def contract_closes(self, date: dt.date, symbols: list[str]) -> dict[str, Decimal]:
        """`close_price` of held contracts whose `close_price_date` is `date`."""
        wanted = set(symbols)
        roots = sorted({r for s in symbols if (r := occ_underlying(s))})
        out: dict[str, Decimal] = {}
        pages = [
            (roots[i : i + 100], status)
            for i in range(0, len(roots), 100)
            # Inactive: contracts that expired (or were delisted) since `date`, for catch-up.
            for status in (AssetStatus.ACTIVE, AssetStatus.INACTIVE)
        ]
        for batch, status in pages:
            token: str | None = None
            while True:
                page = await self._contracts_page(batch, date, token, status)
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
        self, roots: list[str], date: dt.date, token: str | None, status: AssetStatus
    ) -> dict[str, Any]:
        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedTrading(key, secret, raw_data=True, url_override=self._trading_url),
                "option_contracts",
            )
            req = GetOptionContractsRequest(
                underlying_symbols=roots, expiration_date_gte=date, limit=10_000,
                page_token=token, status=status,
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

    async def quote_mids(
        self, date: dt.date, symbols: list[str]
    ) -> tuple[dict[str, Decimal], SettleFeed]:
        """Mid of each contract's latest quote stamped on `date`, and the feed it came from.

        OPRA when the key is entitled; a 403 switches this adapter to the indicative feed.
        """
        out: dict[str, Decimal] = {}
        for i in range(0, len(symbols), 100):
            batch = symbols[i : i + 100]
            try:
                quotes = await self._latest_option_quotes(batch)
            except NotEntitledError:
                if self.options_feed != OptionsFeed.OPRA.value:
                    raise
                log.warning("key not entitled to OPRA: option settles use the indicative feed")
                self.options_feed = OptionsFeed.INDICATIVE.value
                quotes = await self._latest_option_quotes(batch)
            for sym, q in quotes.items():
                if _bar_date(q.get("t"), self._tz) != date:
                    continue
                mid = quote_mid(q.get("bp"), q.get("ap"))
                if mid is not None:
                    out[sym] = mid
        return out, SettleFeed(self.options_feed)

    async def _latest_option_quotes(self, batch: list[str]) -> dict[str, dict[str, Any]]:
        feed = OptionsFeed(self.options_feed)

        def call() -> Any:
            key, secret = self._key()
            client = self._wire(
                _PacedOption(key, secret, raw_data=True, url_override=self._data_url),
                "option_quotes",
            )
            return client.get_option_latest_quote(
                OptionLatestQuoteRequest(symbol_or_symbols=batch, feed=feed)
            )

        quotes: dict[str, dict[str, Any]] = await self._call("option_quotes", call) or {}
        return quotes


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
