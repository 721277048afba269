"""Options market-data REST: chain and snapshots with greeks, bars, latest quotes and trades."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.history import TimeFrame, daily_rows, intraday_rows
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
from alpaca_sim.options import (
    Contract,
    black_scholes,
    chain,
    implied_vol,
    is_occ,
    parse_occ,
    quote_around,
)
from alpaca_sim.plans import RECENT_OPRA_MESSAGE
from alpaca_sim.protocol import rfc3339_ns

if TYPE_CHECKING:
    from alpaca_sim.state import SimState


def _sim(request: web.Request) -> SimState:
    sim: SimState = request.app[SIM_KEY]
    _opra_entitled(request, sim)
    return sim


def _opra_entitled(request: web.Request, sim: SimState) -> None:
    """`feed=opra` without OPRA in the plan: 403 (these endpoints serve the latest data)."""
    feed = request.query.get("feed")
    if feed is not None and feed not in ("opra", "indicative"):
        raise ApiError(400, f"invalid feed: {feed}", 40010001)
    if feed == "opra" and "opra" not in sim.settings.feeds:
        raise ApiError(403, RECENT_OPRA_MESSAGE, 40310000)


def option_snapshot(sim: SimState, c: Contract, now: datetime) -> dict[str, Any]:
    """latestQuote, latestTrade, greeks and impliedVolatility of one contract."""
    st = sim.live.state(c.symbol)
    spot = sim.live.state(c.root).price
    iv = implied_vol(sim.market.seed, c, spot)
    price, greeks = black_scholes(c, spot, iv, now)
    bid, ask = quote_around(round(price, 2))
    qt = rfc3339_ns(st.last_quote_ns // NS, st.last_quote_ns % NS)
    tt = rfc3339_ns(st.last_trade_ns // NS, st.last_trade_ns % NS)
    return {
        "latestQuote": {
            "t": qt,
            "ax": st.exchange,
            "ap": ask,
            "as": 10,
            "bx": st.exchange,
            "bp": bid,
            "bs": 10,
            "c": "A",
        },
        "latestTrade": {"t": tt, "x": st.exchange, "p": st.price, "s": 1, "c": "I"},
        "greeks": greeks,
        "impliedVolatility": iv,
    }


def _filters(q: Any) -> list[Callable[[Contract], bool]]:
    out: list[Callable[[Contract], bool]] = []
    if t := q.get("type"):
        out.append(lambda c: c.call == (t == "call"))
    if (v := q.get("strike_price_gte")) is not None:
        lo = float(v)
        out.append(lambda c: c.strike >= lo)
    if (v := q.get("strike_price_lte")) is not None:
        hi = float(v)
        out.append(lambda c: c.strike <= hi)
    if (v := q.get("expiration_date")) is not None:
        on = date.fromisoformat(v)
        out.append(lambda c: c.expiration == on)
    if (v := q.get("expiration_date_gte")) is not None:
        after = date.fromisoformat(v)
        out.append(lambda c: c.expiration >= after)
    if (v := q.get("expiration_date_lte")) is not None:
        before = date.fromisoformat(v)
        out.append(lambda c: c.expiration <= before)
    if root := q.get("root_symbol"):
        out.append(lambda c: c.root == root)
    return out


async def chain_snapshots(request: web.Request) -> web.Response:
    """`GET /v1beta1/options/snapshots/{underlying}`: the option chain, paginated by symbol."""
    sim = _sim(request)
    now = datetime.now(UTC)
    underlying = parse_symbols(request.match_info["underlying"])[0]
    q = request.query
    limit = min(parse_int(q.get("limit"), 100, 1, 1000, "limit"), sim.settings.page_size_cap)
    try:
        filters = _filters(q)
    except ValueError as exc:
        raise ApiError(400, f"invalid filter: {exc}", 40010001) from exc
    cursor = decode_token(q.get("page_token"))
    contracts = [
        c
        for c in chain(sim.market, underlying, now.astimezone(NY).date())
        if all(f(c) for f in filters) and (cursor is None or c.symbol > cursor[0])
    ]
    page = contracts[:limit]
    token = encode_token(page[-1].symbol, 0) if len(contracts) > limit else None
    snaps = {c.symbol: option_snapshot(sim, c, now) for c in page}
    return json_response({"snapshots": snaps, "next_page_token": token})


def _contracts(request: web.Request) -> list[Contract]:
    symbols = parse_symbols(request.query.get("symbols"), is_occ)
    if len(symbols) > 100:
        raise ApiError(400, "too many symbols: at most 100", 40010001)
    return [parse_occ(s) for s in symbols]


async def snapshots(request: web.Request) -> web.Response:
    """`GET /v1beta1/options/snapshots?symbols=` (at most 100)."""
    sim = _sim(request)
    now = datetime.now(UTC)
    snaps = {c.symbol: option_snapshot(sim, c, now) for c in _contracts(request)}
    return json_response({"snapshots": snaps, "next_page_token": None})


async def latest(request: web.Request) -> web.Response:
    """`GET /v1beta1/options/{quotes,trades}/latest?symbols=`."""
    sim = _sim(request)
    kind = request.match_info["kind"]
    now = datetime.now(UTC)
    out = {}
    for c in _contracts(request):
        snap = option_snapshot(sim, c, now)
        out[c.symbol] = snap["latestQuote" if kind == "quotes" else "latestTrade"]
    return json_response({kind: out})


async def bars(request: web.Request) -> web.Response:
    """`GET /v1beta1/options/bars`: the underlying's bars repriced with Black-Scholes."""
    sim = _sim(request)
    q = request.query
    now = datetime.now(UTC)
    try:
        tf = TimeFrame.parse(q.get("timeframe", ""))
    except ValueError as exc:
        raise ApiError(400, str(exc), 40010001) from exc
    day_start = datetime.combine(now.astimezone(NY).date(), datetime.min.time(), NY)
    start = parse_time(q.get("start"), day_start, "start")
    end = parse_time(q.get("end"), now, "end")
    limit = parse_int(q.get("limit"), 1000, 1, 10_000, "limit")
    out: dict[str, list[dict[str, object]]] = {}
    taken = 0
    for c in _contracts(request):
        expiry = datetime.combine(c.expiration, datetime.min.time(), NY) + timedelta(hours=16)
        stop = min(end, expiry)
        if tf.intraday:
            rows = list(intraday_rows(sim.market, c.root, tf, start, stop, now))
        else:
            rows = daily_rows(sim.market, c.root, tf, start, stop, now)
        for t_ns, row in rows:
            if taken >= limit:
                break
            at = datetime.fromtimestamp(t_ns / NS, UTC)
            iv = implied_vol(sim.market.seed, c, float(row["c"]))  # type: ignore[arg-type]
            px = {
                k: round(black_scholes(c, float(row[k]), iv, at)[0], 2)  # type: ignore[arg-type]
                for k in ("o", "h", "l", "c")
            }
            hi, lo = max(px.values()), min(px.values())
            vol = max(int(row["v"]) // 10_000, 1)  # type: ignore[call-overload]
            out.setdefault(c.symbol, []).append(
                {
                    "t": row["t"],
                    "o": px["o"],
                    "h": hi,
                    "l": lo,
                    "c": px["c"],
                    "v": vol,
                    "n": max(vol // 3, 1),
                    "vw": round((hi + lo + px["c"]) / 3, 4),
                }
            )
            taken += 1
    return json_response({"bars": out, "next_page_token": None})


def routes() -> list[web.RouteDef]:
    """Options data routes."""
    return [
        web.get("/v1beta1/options/snapshots", snapshots),
        web.get("/v1beta1/options/snapshots/{underlying}", chain_snapshots),
        web.get("/v1beta1/options/bars", bars),
        web.get("/v1beta1/options/{kind:quotes|trades}/latest", latest),
    ]
