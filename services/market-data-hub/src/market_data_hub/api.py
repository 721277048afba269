"""HTTP API (FastAPI): latest quote, bars, option chains; tier-gate token; free = delayed path.

A tier without real-time for an asset class gets nothing younger than the horizon (now minus
the delay) on any endpoint: the pure cuts live in `domain/horizon.py`, and every delayed body
passes a last check (`_guard`) before it leaves. Every request of a user counts against its
tier's rate (`[http_rate]` in the policy) before any other work: 429 + Retry-After, no queue.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from raxx_contracts import AssetClass, BarKind, Channel, Path, UnknownTierError, subjects

from market_data_hub.adapters.alpaca import alpaca_timeframe
from market_data_hub.auth import Caller
from market_data_hub.domain.horizon import (
    Timeframe,
    Unit,
    delayed_chain,
    parse_timeframe,
    tick_visible,
    visible_bars,
    youngest_ns,
)
from market_data_hub.domain.symbols import check_symbol, underlying_ok
from market_data_hub.errors import (
    BadRequestError,
    ForbiddenError,
    HorizonError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
)
from market_data_hub.normalize import bar as bar_payload
from market_data_hub.normalize import event_ns, stock_quote

if TYPE_CHECKING:
    from market_data_hub.app import Hub

log = logging.getLogger(__name__)
router = APIRouter()
FRESH_NS = 120 * 1_000_000_000
DEFAULT_LOOKBACK = {
    Unit.MINUTE: timedelta(days=1),
    Unit.HOUR: timedelta(days=7),
    Unit.DAY: timedelta(days=31),
    Unit.WEEK: timedelta(days=366),
    Unit.MONTH: timedelta(days=5 * 366),
}


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


async def limited_caller(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
    """The verified caller, after one request is counted against its tier's rate (never waits;
    cached answers count too, so varying parameters buys nothing)."""
    h: Hub = request.app.state.hub
    rate = h.policy.http_rate_of(who.tier)
    wait = h.user_rates.try_take(who.user_id, rate.requests_per_minute, rate.burst)
    if wait > 0:
        h.metrics.rate_limited.labels("rate_limited").inc()
        raise TooManyRequestsError(
            f"rate limit of the {who.tier!r} tier: {rate.requests_per_minute} requests per "
            f"minute (bursts of {rate.burst})",
            retry_after=wait,
        )
    return who


CallerDep = Annotated[Caller, Depends(limited_caller)]


def _stock(symbol: str) -> str:
    check = check_symbol(AssetClass.STOCKS, symbol)
    if not check.ok:
        raise BadRequestError(f"invalid symbol: {check.reason}")
    return symbol


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).isoformat().replace("+00:00", "Z")


def _guard(body: dict[str, Any], horizon_ns: int, route: str) -> dict[str, Any]:
    """Last line of the delayed path: a body holding anything younger is never sent."""
    youngest = youngest_ns(body)
    if youngest is not None and youngest > horizon_ns:
        log.error("%s: delayed body held a time %d ns past the horizon; refused", route,
                  youngest - horizon_ns)  # fmt: skip
        raise HorizonError("internal error")
    return body


@router.get("/v1/stocks/{symbol}/quotes/latest")
async def latest_quote(symbol: str, who: CallerDep, h: HubDep) -> dict[str, Any]:
    """The latest quote on the caller's path (delayed: the latest at or before now - delay)."""
    _stock(symbol)
    path = h.policy.http_path(who.tier)
    now = h.clock.now_ns()
    horizon = now - h.delay_ns if path is Path.DELAYED else now
    subj = subjects.market(path, AssetClass.STOCKS, Channel.QUOTES, symbol)
    data = await h.latest.get(subj) if h.latest else None
    if data is not None:
        t = event_ns(data)
        # the delay line runs on the leader's clock: re-check against this replica's horizon
        if t <= horizon and horizon - t <= FRESH_NS:
            body = {"path": str(path), "source": "stream", "quote": orjson.loads(data)}
            return _guard(body, horizon, "quote") if path is Path.DELAYED else body
    end = datetime.fromtimestamp(horizon / 1e9, UTC)
    if path is Path.RT:
        raw = await h.rest.call(
            "latest_quote", symbol, lambda c: c.latest_quote(symbol), caller=who.user_id
        )
        feed = h.rest.client.feed.value
    else:
        # cached per minute: a later caller's horizon is never before the first caller's `end`
        key = (symbol, end.replace(second=0, microsecond=0))
        raw, feed = await h.rest.call(
            "quotes", key, lambda c: c.quote_before(symbol, end, end - timedelta(days=4)),
            caller=who.user_id,
        )  # fmt: skip
        if raw is not None and not tick_visible(raw, horizon):
            raw = None  # the provider answered past `end`: never shown on the delayed path
    if not raw:
        raise NotFoundError(f"no quote for {symbol} on the {path} path")
    body = {
        "path": str(path),
        "source": "rest",
        "quote": stock_quote({**raw, "S": symbol}, feed),
    }
    return _guard(body, horizon, "quote") if path is Path.DELAYED else body


@router.get("/v1/stocks/{symbol}/bars")
async def bars(
    symbol: str,
    who: CallerDep,
    h: HubDep,
    timeframe: str = "1Min",
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1)] = 1000,
) -> dict[str, Any]:
    """Historical bars; on the delayed path only bars whose interval ended by now - delay."""
    _stock(symbol)
    try:
        tf = parse_timeframe(timeframe)
    except ValueError as exc:
        raise BadRequestError(f"bad timeframe: {exc}") from None
    if limit > h.settings.http_max_bars:
        raise BadRequestError(f"limit must be at most {h.settings.http_max_bars}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise BadRequestError(f"{name} needs a timezone (e.g. 2024-01-02T15:04:05Z)")
    path = h.policy.http_path(who.tier)
    now_ns = h.clock.now_ns()
    horizon_ns = now_ns - h.delay_ns if path is Path.DELAYED else now_ns
    horizon = datetime.fromtimestamp(horizon_ns // 1_000_000_000, UTC)
    end = min(end, horizon) if end else horizon
    if path is Path.DELAYED:
        # a bar is shown only once it ended by the horizon, so none starts after horizon - 1 min:
        # asking up to there keeps the window 15 minutes old, which SIP serves on every plan
        end = min(end, horizon - timedelta(minutes=1))
    start = start or end - DEFAULT_LOOKBACK[tf.unit]
    if start >= end:
        raise BadRequestError(
            f"start must be before end ({end.isoformat()}"
            + (", the delayed path's horizon)" if path is Path.DELAYED else ")")
        )
    # SIP when the plan allows it for this window (older than 15 minutes: every plan), else
    # IEX; one feed per answer, named on every bar and in the body
    feed = h.rest.client.history_feed(end)
    key = (symbol, str(tf), start, end.replace(microsecond=0), limit, feed)
    rows = await h.rest.call(
        "bars", key, lambda c: c.bars([symbol], alpaca_timeframe(tf), start, end, limit, feed),
        caller=who.user_id,
    )  # fmt: skip
    got = rows.get(symbol, [])
    if path is Path.DELAYED:
        got = visible_bars(got, tf, horizon_ns)
    kind = BarKind.DAILY if tf.unit is Unit.DAY else BarKind.MINUTE
    out = [bar_payload({**b, "S": symbol}, feed, kind) for b in got]
    body = {"symbol": symbol, "timeframe": str(tf), "path": str(path), "feed": feed, "bars": out}
    return _guard(body, horizon_ns, "bars") if path is Path.DELAYED else body


@router.get("/v1/options/{underlying}/chain")
async def chain(
    underlying: str,
    who: CallerDep,
    h: HubDep,
    date_: Annotated[date | None, Query(alias="date")] = None,
) -> dict[str, Any]:
    """Current chain snapshots, or (policy permitting) a historical chain for `date`.

    A tier whose options are delayed gets the chain cut at the horizon: per contract the latest
    quote/trade only when stamped at or before it, bars only when ended by it, no greeks or
    implied volatility (computed from the live underlying).
    """
    if not underlying_ok(underlying):
        raise BadRequestError(f"invalid underlying {underlying!r}")
    path = h.policy.stream_path(who.tier, AssetClass.OPTIONS)
    now_ns = h.clock.now_ns()
    horizon_ns = now_ns - h.delay_ns if path is Path.DELAYED else now_ns
    today = datetime.fromtimestamp(now_ns / 1e9, UTC).date()
    if date_ is not None and date_ < today:
        if not h.policy.rule(who.tier).historical_option_chains:
            raise ForbiddenError(
                f"historical option chains are not included in the {who.tier!r} tier; "
                "upgrade to a tier with historical_option_chains (pro_plus)"
            )
        snap = await h.rest.call_pages(
            "chain", (underlying, date_), lambda c, tok: c.chain_page(underlying, date_, tok),
            caller=who.user_id,
        )  # fmt: skip
        syms = sorted(snap)[:100]
        day_bars = await h.rest.call(
            "option_bars", (tuple(syms), date_), lambda c: c.option_daily_bars(syms, date_),
            caller=who.user_id,
        )  # fmt: skip
        daily = Timeframe(1, Unit.DAY)
        contracts = {}
        for s, rows in day_bars.items():
            seen = visible_bars(rows, daily, horizon_ns) if path is Path.DELAYED else rows
            if seen:
                contracts[s] = seen[0]
        body = {"underlying": underlying, "date": date_.isoformat(), "contracts": contracts}
        return _guard(body, horizon_ns, "chain") if path is Path.DELAYED else body
    snap = await h.rest.call_pages(
        "chain", (underlying, None), lambda c, tok: c.chain_page(underlying, None, tok),
        caller=who.user_id,
    )  # fmt: skip
    if path is Path.RT:
        return {"underlying": underlying, "path": str(path), "contracts": snap}
    body = {
        "underlying": underlying,
        "path": str(path),
        "as_of": _ts(horizon_ns),
        "contracts": delayed_chain(snap, horizon_ns),
    }
    return _guard(body, horizon_ns, "chain")
