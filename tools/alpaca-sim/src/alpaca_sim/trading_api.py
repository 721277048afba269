"""Trading API routes: account, orders, positions, clock, calendar, option contracts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.expired_options import expired_chain, expired_json
from alpaca_sim.http_common import ApiError, decode_token, encode_token, json_response, parse_int
from alpaca_sim.keys import IDENTITY_KEY, SIM_KEY
from alpaca_sim.options import (
    Contract,
    asset_id,
    black_scholes,
    chain,
    implied_vol,
    is_occ,
    parse_occ,
)
from alpaca_sim.trading import Account, OrderError

if TYPE_CHECKING:
    from alpaca_sim.state import SimState


def _sim(request: web.Request) -> SimState:
    sim: SimState = request.app[SIM_KEY]
    return sim


def _account(request: web.Request) -> Account:
    sim = _sim(request)
    who = request[IDENTITY_KEY]
    account_id = who[6:] if who.startswith("oauth:") else str(uuid.uuid5(uuid.NAMESPACE_OID, who))
    return sim.broker.account(account_id)


async def get_account(request: web.Request) -> web.Response:
    """`GET /v2/account`."""
    return json_response(_sim(request).broker.account_json(_account(request)))


async def post_order(request: web.Request) -> web.Response:
    """`POST /v2/orders`: 422 on a repeated client_order_id."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid JSON body", 40010000) from exc
    try:
        order = _sim(request).broker.submit(_account(request), body)
    except OrderError as exc:
        raise ApiError(exc.status, exc.message, exc.code) from exc
    return json_response(order)


async def list_orders(request: web.Request) -> web.Response:
    """`GET /v2/orders?status=open|closed|all&limit&direction&symbols`."""
    q = request.query
    status = q.get("status", "open")
    orders = list(_account(request).orders)
    done = {"filled", "canceled", "expired", "rejected", "replaced"}
    if status == "open":
        orders = [o for o in orders if o["status"] not in done]
    elif status == "closed":
        orders = [o for o in orders if o["status"] in done]
    if symbols := q.get("symbols"):
        wanted = set(symbols.split(","))
        orders = [o for o in orders if o["symbol"] in wanted]
    if q.get("direction", "desc") == "desc":
        orders.reverse()
    return json_response(orders[: parse_int(q.get("limit"), 50, 1, 500, "limit")])


async def get_order(request: web.Request) -> web.Response:
    """`GET /v2/orders/{order_id}`."""
    try:
        return json_response(_sim(request).broker.find(_account(request), request.match_info["id"]))
    except OrderError as exc:
        raise ApiError(exc.status, exc.message, exc.code) from exc


async def get_order_by_client_id(request: web.Request) -> web.Response:
    """`GET /v2/orders:by_client_order_id?client_order_id=`."""
    coid = request.query.get("client_order_id")
    for order in _account(request).orders:
        if order["client_order_id"] == coid:
            return json_response(order)
    raise ApiError(404, "order not found", 40410000)


async def cancel_order(request: web.Request) -> web.Response:
    """`DELETE /v2/orders/{order_id}`: 204."""
    try:
        _sim(request).broker.cancel(_account(request), request.match_info["id"])
    except OrderError as exc:
        raise ApiError(exc.status, exc.message, exc.code) from exc
    return web.Response(status=204)


async def cancel_all(request: web.Request) -> web.Response:
    """`DELETE /v2/orders`: 207 with one status per open order."""
    sim, acct = _sim(request), _account(request)
    out = []
    for order in acct.orders:
        if order["status"] in ("new", "accepted", "partially_filled"):
            out.append(
                {"id": order["id"], "status": 200, "body": sim.broker.cancel(acct, order["id"])}
            )
    return json_response(out, status=207)


async def positions(request: web.Request) -> web.Response:
    """`GET /v2/positions`."""
    sim, acct = _sim(request), _account(request)
    return json_response([sim.broker.position_json(p) for p in acct.positions.values()])


async def position(request: web.Request) -> web.Response:
    """`GET /v2/positions/{symbol}`."""
    sim, acct = _sim(request), _account(request)
    pos = acct.positions.get(request.match_info["symbol"].upper())
    if pos is None:
        raise ApiError(404, "position does not exist", 40410000)
    return json_response(sim.broker.position_json(pos))


async def clock(request: web.Request) -> web.Response:
    """`GET /v2/clock`."""
    return json_response(_sim(request).calendar.clock(datetime.now(UTC)))


async def calendar(request: web.Request) -> web.Response:
    """`GET /v2/calendar?start&end`: trading days with ET open/close (13:00 on half days)."""
    cal = _sim(request).calendar
    q = request.query
    today = datetime.now(NY).date()
    try:
        start = (
            date.fromisoformat(q["start"][:10]) if q.get("start") else today - timedelta(days=30)
        )
        end = date.fromisoformat(q["end"][:10]) if q.get("end") else today + timedelta(days=30)
    except ValueError as exc:
        raise ApiError(400, f"invalid date: {exc}", 40010001) from exc
    return json_response([cal.calendar_entry(d) for d in cal.days_between(start, end)])


def contract_json(sim: SimState, c: Contract, today: date) -> dict[str, Any]:
    """`OptionContract` with the previous session's model close."""
    prev = sim.calendar.previous_day(today)
    close_price = close_date = None
    if prev is not None and prev <= c.expiration:
        spot = sim.market.daily_bar(c.root, prev)[3]
        at = sim.calendar.session(prev).close
        close_price = f"{black_scholes(c, spot, implied_vol(sim.market.seed, c, spot), at)[0]:.2f}"
        close_date = prev.isoformat()
    return {
        "id": c.id,
        "symbol": c.symbol,
        "name": f"{c.root} {c.expiration:%b %d %Y} {c.strike:g} {'Call' if c.call else 'Put'}",
        "status": "active",
        "tradable": True,
        "expiration_date": c.expiration.isoformat(),
        "root_symbol": c.root,
        "underlying_symbol": c.root,
        "underlying_asset_id": asset_id(c.root),
        "type": "call" if c.call else "put",
        "style": "american",
        "strike_price": f"{c.strike:g}",
        "multiplier": "100",
        "size": "100",
        "open_interest": str(100 + int(c.strike) % 900),
        "open_interest_date": close_date,
        "close_price": close_price,
        "close_price_date": close_date,
    }


async def option_contracts(request: web.Request) -> web.Response:
    """`GET /v2/options/contracts`: default expiry window is up to next weekend, like Alpaca."""
    sim = _sim(request)
    q = request.query
    today = datetime.now(NY).date()
    underlyings = sorted(
        {s.strip().upper() for s in q.get("underlying_symbols", "").split(",") if s}
    )
    if not underlyings:
        raise ApiError(422, "underlying_symbols is required by the simulator", 42210000)
    limit = parse_int(q.get("limit"), 100, 1, 10_000, "limit")
    lte = q.get("expiration_date_lte")
    inactive = q.get("status") == "inactive"
    if not inactive and not (q.get("expiration_date") or lte or q.get("expiration_date_gte")):
        lte = (today + timedelta(days=(5 - today.weekday()) % 7 + 1)).isoformat()
    token_in = decode_token(q.get("page_token"))
    cursor = (parse_occ(token_in[0]).root, token_in[0]) if token_in else None
    picked: list[Contract] = []
    for u in underlyings:
        listed = (
            expired_chain(sim, u, today, q.get("expiration_date_gte"), lte)
            if inactive
            else chain(sim.market, u, today)
        )
        for c in listed:
            if q.get("type") and c.call != (q["type"] == "call"):
                continue
            if q.get("expiration_date") and c.expiration.isoformat() != q["expiration_date"]:
                continue
            if lte and c.expiration.isoformat() > lte:
                continue
            if (gte := q.get("expiration_date_gte")) and c.expiration.isoformat() < gte:
                continue
            if (v := q.get("strike_price_gte")) and c.strike < float(v):
                continue
            if (v := q.get("strike_price_lte")) and c.strike > float(v):
                continue
            if (root := q.get("root_symbol")) and c.root != root:
                continue
            if cursor is None or (c.root, c.symbol) > cursor:
                picked.append(c)
    picked.sort(key=lambda c: (c.root, c.symbol))
    page = picked[:limit]
    token = encode_token(page[-1].symbol, 0) if len(picked) > limit else None
    body = [contract_json(sim, c, today) for c in page]
    if inactive:
        body = [expired_json(sim, c, b) for c, b in zip(page, body, strict=True)]
    return json_response({"option_contracts": body, "next_page_token": token})


async def option_contract(request: web.Request) -> web.Response:
    """`GET /v2/options/contracts/{symbol_or_id}`."""
    sim = _sim(request)
    key = request.match_info["symbol_or_id"]
    today = datetime.now(NY).date()
    if is_occ(key):
        return json_response(contract_json(sim, parse_occ(key), today))
    for root in sim.settings.universe:
        for c in chain(sim.market, root, today):
            if c.id == key:
                return json_response(contract_json(sim, c, today))
    raise ApiError(404, "option contract not found", 40410000)


def routes() -> list[web.RouteDef]:
    """Trading API routes."""
    return [
        web.get("/v2/account", get_account),
        web.post("/v2/orders", post_order),
        web.get("/v2/orders", list_orders),
        web.delete("/v2/orders", cancel_all),
        web.get("/v2/orders:by_client_order_id", get_order_by_client_id),
        web.get("/v2/orders/{id}", get_order),
        web.delete("/v2/orders/{id}", cancel_order),
        web.get("/v2/positions", positions),
        web.get("/v2/positions/{symbol}", position),
        web.get("/v2/clock", clock),
        web.get("/v2/calendar", calendar),
        web.get("/v2/options/contracts", option_contracts),
        web.get("/v2/options/contracts/{symbol_or_id}", option_contract),
    ]
