"""HTTP API (FastAPI): latest quote, bars, option chains; tier-gate token; free = delayed path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from raxx_contracts import AssetClass, BarKind, Channel, Path, UnknownTierError, subjects

from market_data_hub.adapters.alpaca import option_daily_bars, parse_timeframe
from market_data_hub.auth import Caller
from market_data_hub.domain.symbols import check_symbol, underlying_ok
from market_data_hub.errors import BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError
from market_data_hub.normalize import bar as bar_payload
from market_data_hub.normalize import event_ns, stock_quote

if TYPE_CHECKING:
    from market_data_hub.app import Hub

router = APIRouter()
FRESH_NS = 120 * 1_000_000_000


def hub(request: Request) -> Hub:
    """The running hub (set up in the lifespan)."""
    return request.app.state.hub  # type: ignore[no-any-return]


HubDep = Annotated["Hub", Depends(hub)]


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """Verify the `Authorization: Bearer <tier-gate HTTP token>` header."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise UnauthorizedError("missing bearer token (get one from tier-gate POST /v1/tokens)")
    h: Hub = request.app.state.hub
    who = await h.verifier.verify(authorization[7:].strip())
    try:
        h.policy.rule(who.tier)
    except UnknownTierError:
        raise UnauthorizedError(f"unknown tier {who.tier!r} in token") from None
    await h.tiers.check(who)  # a downgrade supersedes the token (tier-gate's KV bucket)
    return who


CallerDep = Annotated[Caller, Depends(caller)]


def _stock(symbol: str) -> str:
    check = check_symbol(AssetClass.STOCKS, symbol)
    if not check.ok:
        raise BadRequestError(f"invalid symbol: {check.reason}")
    return symbol


@router.get("/v1/stocks/{symbol}/quotes/latest")
async def latest_quote(symbol: str, who: CallerDep, h: HubDep) -> dict[str, Any]:
    """The latest quote on the caller's path (free: as of now minus the delay)."""
    _stock(symbol)
    path = h.policy.http_path(who.tier)
    now = h.clock.now_ns()
    horizon = now - h.delay_ns if path is Path.DELAYED else now
    subj = subjects.market(path, AssetClass.STOCKS, Channel.QUOTES, symbol)
    data = await h.latest.get(subj) if h.latest else None
    if data is not None and horizon - event_ns(data) <= FRESH_NS:
        return {"path": str(path), "source": "stream", "quote": orjson.loads(data)}
    end = datetime.fromtimestamp(horizon / 1e9, UTC)
    if path is Path.RT:
        raw = await h.rest.call("latest_quote", symbol, lambda c: c.latest_quote(symbol))
    else:
        key = (symbol, end.replace(second=0, microsecond=0))
        raw = await h.rest.call(
            "quotes", key, lambda c: c.quote_before(symbol, end, end - timedelta(days=4))
        )
    if not raw:
        raise NotFoundError(f"no quote for {symbol} on the {path} path")
    return {
        "path": str(path),
        "source": "rest",
        "quote": stock_quote({**raw, "S": symbol}, h.settings.feed),
    }


@router.get("/v1/stocks/{symbol}/bars")
async def bars(
    symbol: str,
    who: CallerDep,
    h: HubDep,
    timeframe: str = "1Min",
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Historical bars; on the delayed path `end` is clamped to now minus the delay."""
    _stock(symbol)
    tf = parse_timeframe(timeframe)
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise BadRequestError(f"{name} needs a timezone (e.g. 2024-01-02T15:04:05Z)")
    path = h.policy.http_path(who.tier)
    now = datetime.fromtimestamp(h.clock.now_ns() / 1e9, UTC)
    horizon = now - timedelta(seconds=h.settings.delay_seconds) if path is Path.DELAYED else now
    end = min(end, horizon) if end else horizon
    start = start or end - timedelta(days=1)
    if start >= end:
        raise BadRequestError(
            f"start must be before end ({end.isoformat()}"
            + (", the delayed path's horizon)" if path is Path.DELAYED else ")")
        )
    key = (symbol, timeframe, start, end.replace(microsecond=0), limit)
    rows = await h.rest.call("bars", key, lambda c: c.bars([symbol], tf, start, end, limit))
    kind = BarKind.DAILY if timeframe.endswith(("Day", "D")) else BarKind.MINUTE
    out = [bar_payload({**b, "S": symbol}, h.settings.feed, kind) for b in rows.get(symbol, [])]
    return {"symbol": symbol, "timeframe": timeframe, "path": str(path), "bars": out}


@router.get("/v1/options/{underlying}/chain")
async def chain(
    underlying: str,
    who: CallerDep,
    h: HubDep,
    date_: Annotated[date | None, Query(alias="date")] = None,
) -> dict[str, Any]:
    """Current chain snapshots, or (policy permitting) a historical chain for `date`."""
    if not underlying_ok(underlying):
        raise BadRequestError(f"invalid underlying {underlying!r}")
    today = datetime.fromtimestamp(h.clock.now_ns() / 1e9, UTC).date()
    if date_ is not None and date_ < today:
        if not h.policy.rule(who.tier).historical_option_chains:
            raise ForbiddenError(
                f"historical option chains are not included in the {who.tier!r} tier; "
                "upgrade to a tier with historical_option_chains (pro_plus)"
            )
        snap = await h.rest.call("chain", (underlying, date_), lambda c: c.chain(underlying, date_))
        syms = sorted(snap)[:100]
        day_bars = await h.rest.call(
            "option_bars", (tuple(syms), date_), lambda c: option_daily_bars(c, syms, date_)
        )
        return {
            "underlying": underlying,
            "date": date_.isoformat(),
            "contracts": {s: rows[0] for s, rows in day_bars.items() if rows},
        }
    path = h.policy.stream_path(who.tier, AssetClass.OPTIONS)
    snap = await h.rest.call("chain", (underlying, None), lambda c: c.chain(underlying, None))
    return {"underlying": underlying, "path": str(path), "contracts": snap}
