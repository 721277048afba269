"""Closing auctions (`/v2/stocks/auctions`) and late close corrections (`/sim/late_close`).

The official close of a day is the primary listing market's closing auction print (condition
`M`, exchange of the listing). The simulator puts it a few basis points from the daily bar's
close (the last eligible consolidated trade), never on it, so a test can tell which one a
settle used. Symbols named `NOAUC...` or listed in `SIM_NO_AUCTION` have no closing auction
(the settle must fall back to the daily bar); halted symbols have neither.

A late correction (`POST /sim/late_close {"symbol", "date", "close"}`) changes a past
session's close after the fact, as a late print or an exchange correction does: the daily
bar's close (high/low widened to hold it) and the official closing auction print both move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.http_common import (
    ApiError,
    decode_token,
    encode_token,
    json_response,
    parse_int,
    parse_symbols,
    parse_time,
)
from alpaca_sim.keys import SIM_KEY
from alpaca_sim.late_closes import LateCloses
from alpaca_sim.market import Market, stable_hash
from alpaca_sim.protocol import rfc3339_ns

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

RECENT_SIP = timedelta(minutes=15)


def has_closing_auction(market: Market, no_auction: set[str], symbol: str, day: date) -> bool:
    """Whether `symbol` had a closing auction on `day`."""
    return not (symbol.startswith("NOAUC") or symbol in no_auction or market.is_halted(symbol, day))


def _draw(market: Market, symbol: str, day: date) -> int:
    return stable_hash(market.seed, "auction", symbol, day.isoformat())


def official_close(market: Market, late: LateCloses, symbol: str, day: date) -> float:
    """The closing auction price: 1-8 bp off the bar close, or the corrected close."""
    return _official(market, late, symbol, day, market.daily_bar(symbol, day)[3], None)


def _official(
    market: Market, late: LateCloses, symbol: str, day: date, bar_close: float, h: int | None
) -> float:
    corrected = late.get(symbol, day)
    if corrected is not None:
        return corrected
    h = _draw(market, symbol, day) if h is None else h
    bp = 1 + h % 8
    sign = 1 if (h >> 8) & 1 else -1
    price = round(bar_close * (1 + sign * bp / 10_000), 2)
    if price == bar_close:
        price = round(bar_close + sign * 0.01, 2)
    return max(price, 0.01)


@dataclass(frozen=True, slots=True)
class _Day:
    """Per-day parts shared by every symbol's entry."""

    iso: str
    open_t: str
    close_t: str
    closed: bool

    @classmethod
    def of(cls, market: Market, day: date, end: datetime) -> _Day:
        session = market.calendar.session(day)
        return cls(
            day.isoformat(),
            rfc3339_ns(int(session.open.timestamp()), 68_034_304),
            rfc3339_ns(int(session.close.timestamp()), 152_902_912),
            session.close <= end,
        )


def daily_auction(
    market: Market, late: LateCloses, symbol: str, day: date, end: datetime, d: _Day | None = None
) -> dict[str, Any]:
    """One `stock_daily_auctions` entry: the listing market's prints stamped up to `end`."""
    d = d or _Day.of(market, day, end)
    bar = market.daily_bar(symbol, day)
    h = _draw(market, symbol, day)
    x = "PNQ"[stable_hash(market.seed, "listing", symbol) % 3]
    opening = {
        "c": "O", "p": bar[0], "s": 100 + (h >> 16) % 900,
        "t": d.open_t, "x": x,
    }  # fmt: skip
    if not d.closed:
        return {"d": d.iso, "o": [opening], "c": []}
    closing = {
        "c": "M", "p": _official(market, late, symbol, day, bar[3], h),
        "s": 1000 + (h >> 32) % 90_000,
        "t": d.close_t, "x": x,
    }  # fmt: skip
    return {"d": d.iso, "o": [opening], "c": [closing]}


def _sim(request: web.Request) -> SimState:
    sim: SimState = request.app[SIM_KEY]
    return sim


def _auctions(
    request: web.Request, symbols: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    sim = _sim(request)
    q = request.query
    now = datetime.now(UTC)
    feed = q.get("feed", "sip")
    if feed != "sip":
        raise ApiError(400, "invalid feed: only sip is valid for auctions", 40010001)
    day_start = datetime.combine(now.astimezone(NY).date(), datetime.min.time(), NY)
    start = parse_time(q.get("start"), day_start, "start")
    end = parse_time(q.get("end"), now, "end")
    if "sip" not in sim.settings.feeds and end > now - RECENT_SIP:
        raise ApiError(403, "subscription does not permit querying recent SIP data", 40310000)
    if start > end:
        raise ApiError(422, "end should not be before start", 42210000)
    end = min(end, now)  # nothing is printed in the future
    limit = min(parse_int(q.get("limit"), 1000, 1, 10_000, "limit"), sim.settings.page_size_cap)
    cursor = decode_token(q.get("page_token"))
    no_auction = set(sim.settings.no_auction)
    days = sim.calendar.days_between(start.astimezone(NY).date(), end.astimezone(NY).date())
    parts = {  # days whose session opened by `end`
        day: _Day.of(sim.market, day, end) for day in days if sim.calendar.session(day).open <= end
    }
    out: dict[str, list[dict[str, Any]]] = {}
    taken = 0
    last = ("", 0)
    for symbol in symbols:
        if cursor and symbol < cursor[0]:
            continue
        for day in days:
            ordinal = day.toordinal()
            if cursor and symbol == cursor[0] and ordinal <= cursor[1]:
                continue
            if day not in parts or not has_closing_auction(sim.market, no_auction, symbol, day):
                continue
            if taken == limit:
                return out, encode_token(*last)
            out.setdefault(symbol, []).append(
                daily_auction(sim.market, sim.market.late_closes, symbol, day, end, parts[day])
            )
            taken += 1
            last = (symbol, ordinal)
    return out, None


async def auctions(request: web.Request) -> web.Response:
    """`GET /v2/stocks/auctions?symbols=`: daily auctions keyed by symbol, `limit` over all."""
    data, token = _auctions(request, parse_symbols(request.query.get("symbols")))
    return json_response({"auctions": data, "next_page_token": token})


async def auctions_single(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{symbol}/auctions`."""
    symbol = parse_symbols(request.match_info["symbol"])[0]
    data, token = _auctions(request, [symbol])
    return json_response(
        {"symbol": symbol, "auctions": data.get(symbol, []), "next_page_token": token}
    )


async def post_late_close(request: web.Request) -> web.Response:
    """`POST /sim/late_close {"symbol", "date", "close"}`: correct a past session's close."""
    sim = _sim(request)
    try:
        body = orjson.loads(await request.read())
        symbol = str(body["symbol"])
        day = date.fromisoformat(str(body["date"]))
        close = float(body["close"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"need symbol, date, close: {exc}") from exc
    if close <= 0 or not sim.calendar.is_trading_day(day):
        raise web.HTTPBadRequest(text="close must be positive and date a trading day")
    if sim.calendar.session(day).close > datetime.now(UTC):
        raise web.HTTPBadRequest(text="only a closed session's close can be corrected")
    sim.market.late_closes.set(symbol, day, close)
    return json_response({"symbol": symbol, "date": day.isoformat(), "close": round(close, 2)})


def routes() -> list[web.RouteDef]:
    """Auction and late-correction routes."""
    return [
        web.get("/v2/stocks/auctions", auctions),
        web.get("/v2/stocks/{symbol}/auctions", auctions_single),
        web.post("/sim/late_close", post_late_close),
    ]
