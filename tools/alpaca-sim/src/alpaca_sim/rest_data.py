"""Stock market-data REST: historical bars/trades/quotes with pagination, latest, snapshots."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.history import TimeFrame, daily_rows, intraday_rows, iso_z, tick_rows
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
from alpaca_sim.market import NS
from alpaca_sim.plans import HISTORY_FEEDS, LATEST_FEEDS, RECENT_SIP_MESSAGE
from alpaca_sim.protocol import STOCK_SYMBOL_RE, rfc3339_ns

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

Row = tuple[int, dict[str, object]]
RECENT_SIP = timedelta(minutes=15)


def _sim(request: web.Request) -> SimState:
    sim: SimState = request.app[SIM_KEY]
    return sim


def _latest_feed(request: web.Request, sim: SimState) -> None:
    """`feed` of latest/snapshot: `delayed_sip` is fine on every plan, SIP needs the plan."""
    feed = request.query.get("feed")
    if feed is None:
        return
    if feed not in LATEST_FEEDS:
        raise ApiError(400, f"invalid feed: {feed}", 40010001)
    if feed == "sip" and "sip" not in sim.settings.feeds:
        raise ApiError(403, RECENT_SIP_MESSAGE, 40310000)


def _window(request: web.Request, sim: SimState) -> tuple[datetime, datetime, datetime]:
    now = datetime.now(UTC)
    q = request.query
    day_start = datetime.combine(now.astimezone(NY).date(), datetime.min.time(), NY)
    start = parse_time(q.get("start"), day_start, "start")
    end = parse_time(q.get("end"), now, "end")
    sip_ok = "sip" in sim.settings.feeds
    # Alpaca's default: SIP with the subscription, or when the window is 15 minutes old
    feed = q.get("feed") or ("sip" if sip_ok or end <= now - RECENT_SIP else "iex")
    if feed not in HISTORY_FEEDS:  # e.g. delayed_sip: only streams and latest/snapshot
        raise ApiError(400, f"invalid feed: {feed}", 40010001)
    if feed == "sip" and not sip_ok and end > now - RECENT_SIP:
        raise ApiError(403, RECENT_SIP_MESSAGE, 40310000)
    if start > end:
        raise ApiError(422, "end should not be before start", 42210000)
    return start, end, now


def _rows(
    sim: SimState,
    kind: str,
    symbol: str,
    tf: TimeFrame | None,
    start: datetime,
    end: datetime,
    now: datetime,
    desc: bool,
) -> Iterator[Row]:
    if kind != "bars":
        return tick_rows(sim.market, symbol, kind, start, end, now, desc)
    assert tf is not None  # noqa: S101 (bars always carry a timeframe)
    if tf.intraday:
        return intraday_rows(sim.market, symbol, tf, start, end, now, desc)
    rows = daily_rows(sim.market, symbol, tf, start, end, now)
    return iter(reversed(rows) if desc else rows)


def _page(
    request: web.Request, kind: str, symbols: list[str]
) -> tuple[dict[str, list[dict[str, object]]], str | None]:
    sim = _sim(request)
    q = request.query
    start, end, now = _window(request, sim)
    tf = None
    if kind == "bars":
        try:
            tf = TimeFrame.parse(q.get("timeframe", ""))
        except ValueError as exc:
            raise ApiError(400, str(exc), 40010001) from exc
    limit = parse_int(q.get("limit"), 1000, 1, 10_000, "limit")
    limit = min(limit, sim.settings.page_size_cap)
    desc = q.get("sort", "asc") == "desc"
    cursor = decode_token(q.get("page_token"))
    out: dict[str, list[dict[str, object]]] = {}
    taken = 0
    last: tuple[str, int] | None = None
    for symbol in symbols:
        if cursor and symbol < cursor[0]:
            continue
        rows = _rows(sim, kind, symbol, tf, start, end, now, desc)
        if cursor and symbol == cursor[0]:
            after = cursor[1]
            rows = (r for r in rows if (r[0] < after if desc else r[0] > after))
        for t_ns, row in itertools.islice(rows, limit - taken + 1):
            if taken == limit and last is not None:
                return out, encode_token(*last)  # more rows exist past this page
            out.setdefault(symbol, []).append(row)
            taken += 1
            last = (symbol, t_ns)
    return out, None


async def historical(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{bars,trades,quotes}`: sorted by symbol then time, `limit` over all."""
    kind = request.match_info["kind"]
    data, token = _page(request, kind, parse_symbols(request.query.get("symbols")))
    return json_response({kind: data, "next_page_token": token})


async def historical_single(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{symbol}/{bars,trades,quotes}`."""
    kind = request.match_info["kind"]
    symbol = parse_symbols(request.match_info["symbol"])[0]
    data, token = _page(request, kind, [symbol])
    return json_response({kind: data.get(symbol, []), "symbol": symbol, "next_page_token": token})


def latest_trade(sim: SimState, symbol: str) -> dict[str, Any]:
    """The live state's last trade."""
    st = sim.live.state(symbol)
    t = rfc3339_ns(st.last_trade_ns // NS, st.last_trade_ns % NS)
    return {
        "t": t,
        "x": st.exchange,
        "p": st.price,
        "s": st.last_trade_size,
        "c": ["@"],
        "i": st.trade_id,
        "z": st.tape,
    }


def latest_quote(sim: SimState, symbol: str) -> dict[str, Any]:
    """The live state's last quote."""
    st = sim.live.state(symbol)
    t = rfc3339_ns(st.last_quote_ns // NS, st.last_quote_ns % NS)
    return {
        "t": t,
        "ax": "V",
        "ap": st.ask,
        "as": st.ask_size,
        "bx": "V",
        "bp": st.bid,
        "bs": st.bid_size,
        "c": ["R"],
        "z": st.tape,
    }


def latest_bar(sim: SimState, symbol: str, now: datetime) -> dict[str, object] | None:
    """The last completed minute bar in the history."""
    tf = TimeFrame(1, "Min")
    rows = intraday_rows(sim.market, symbol, tf, now - timedelta(days=14), now, now, True)
    first = next(rows, None)
    return first[1] if first else None


def _daily_pair(sim: SimState, symbol: str, now: datetime) -> list[dict[str, object]]:
    rows = daily_rows(sim.market, symbol, TimeFrame(1, "Day"), now - timedelta(days=14), now, now)
    return [row for _, row in rows[-2:]]


def snapshot(sim: SimState, symbol: str, now: datetime) -> dict[str, Any]:
    """`latestTrade`, `latestQuote`, `minuteBar`, `dailyBar`, `prevDailyBar`."""
    pair = _daily_pair(sim, symbol, now)
    return {
        "latestTrade": latest_trade(sim, symbol),
        "latestQuote": latest_quote(sim, symbol),
        "minuteBar": latest_bar(sim, symbol, now),
        "dailyBar": pair[-1] if pair else None,
        "prevDailyBar": pair[-2] if len(pair) > 1 else None,
    }


async def latest(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{trades,quotes,bars}/latest?symbols=`."""
    sim = _sim(request)
    _latest_feed(request, sim)
    kind = request.match_info["kind"]
    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    for symbol in parse_symbols(request.query.get("symbols")):
        if kind == "trades":
            out[symbol] = latest_trade(sim, symbol)
        elif kind == "quotes":
            out[symbol] = latest_quote(sim, symbol)
        elif (bar := latest_bar(sim, symbol, now)) is not None:
            out[symbol] = bar
    return json_response({kind: out})


async def latest_single(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{symbol}/{trades,quotes,bars}/latest`."""
    sim = _sim(request)
    _latest_feed(request, sim)
    symbol = parse_symbols(request.match_info["symbol"])[0]
    kind = request.match_info["kind"]
    key = kind[:-1]
    if kind == "trades":
        body: Any = latest_trade(sim, symbol)
    elif kind == "quotes":
        body = latest_quote(sim, symbol)
    else:
        body = latest_bar(sim, symbol, datetime.now(UTC))
    return json_response({"symbol": symbol, key: body})


async def snapshots(request: web.Request) -> web.Response:
    """`GET /v2/stocks/snapshots?symbols=`: a bare map keyed by symbol."""
    sim = _sim(request)
    _latest_feed(request, sim)
    now = datetime.now(UTC)
    symbols = parse_symbols(request.query.get("symbols"), lambda s: bool(STOCK_SYMBOL_RE.match(s)))
    return json_response({s: snapshot(sim, s, now) for s in symbols})


async def snapshot_single(request: web.Request) -> web.Response:
    """`GET /v2/stocks/{symbol}/snapshot`."""
    sim = _sim(request)
    _latest_feed(request, sim)
    symbol = parse_symbols(request.match_info["symbol"])[0]
    return json_response({"symbol": symbol, **snapshot(sim, symbol, datetime.now(UTC))})


def routes() -> list[web.RouteDef]:
    """Stock data routes."""
    kinds = "{kind:bars|trades|quotes}"
    return [
        web.get("/v2/stocks/snapshots", snapshots),
        web.get(f"/v2/stocks/{kinds}/latest", latest),
        web.get(f"/v2/stocks/{kinds}", historical),
        web.get("/v2/stocks/{symbol}/snapshot", snapshot_single),
        web.get(f"/v2/stocks/{{symbol}}/{kinds}/latest", latest_single),
        web.get(f"/v2/stocks/{{symbol}}/{kinds}", historical_single),
    ]


__all__ = ["iso_z", "routes"]
