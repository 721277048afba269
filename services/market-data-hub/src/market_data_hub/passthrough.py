"""`/alpaca/...`: an Alpaca-compatible, read-only REST passthrough for internal service clients.

Internal services (eod-settler) point alpaca-py's `url_override` at `http://<hub>/alpaca` and
send a hub service-client id and secret as `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY`. The hub
checks them against its Vault map (client id -> sha256 hex of the secret), then forwards an
allow-listed GET with its own Alpaca key, taking its budget from the share of the Alpaca REST
budget reserved for internal clients (users of the HTTP API cannot spend it; Alpaca's budget is
per account). Status, body and `X-RateLimit-*` come back as is, except that an error body is
replaced by Alpaca's numeric code and a fixed message (the upstream body is logged).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from market_data_hub.domain.ratelimit import retry_wait

if TYPE_CHECKING:
    from market_data_hub.app import Hub

log = logging.getLogger(__name__)
router = APIRouter(prefix="/alpaca", include_in_schema=False)
PASSED_HEADERS = ("content-type", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass(frozen=True)
class Route:
    """One allow-listed Alpaca path: its template (the metrics label) and which API serves it."""

    template: str
    api: str  # "data" or "trading"
    pattern: re.Pattern[str]


def _route(template: str, api: str) -> Route:
    regex = re.sub(r"\\\{[a-z_]+\\\}", r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.escape(template))
    return Route(template, api, re.compile(regex))


ALLOWED: tuple[Route, ...] = (
    # market data (MDH_ALPACA_DATA_URL)
    _route("/v2/stocks/bars", "data"),
    _route("/v2/stocks/{symbol}/bars", "data"),
    _route("/v2/stocks/auctions", "data"),  # the settler's official closes (SIP only)
    _route("/v2/stocks/quotes/latest", "data"),
    _route("/v2/stocks/trades/latest", "data"),
    _route("/v1beta1/options/quotes/latest", "data"),
    _route("/v1beta1/options/trades/latest", "data"),
    _route("/v1beta1/options/bars", "data"),
    _route("/v1/corporate-actions", "data"),  # alpaca-py's CorporateActionsClient
    _route("/v1beta1/corporate-actions", "data"),  # the same API's older path
    # trading-API reference data (MDH_ALPACA_TRADING_URL); nothing account- or order-related
    _route("/v2/calendar", "trading"),
    _route("/v2/clock", "trading"),
    _route("/v2/options/contracts", "trading"),
    _route("/v2/options/contracts/{symbol_or_id}", "trading"),
)


def match(path: str) -> Route | None:
    """The allow-list entry for `path` (leading `/`, below `/alpaca`), or None.

    `fullmatch`, never `match(...$)`: `$` also matches before a trailing newline, so
    `/v2/clock\n` (`%0a` in the URL) would pass and reach the upstream URL as is.
    """
    for route in ALLOWED:
        if route.pattern.fullmatch(path):
            return route
    return None


def secret_digest(secret: str) -> str:
    """What the service-clients map stores for a client secret (sha256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def client_ok(clients: dict[str, str], client_id: str | None, secret: str | None) -> bool:
    """Constant-time check of a client id and secret against the map (id -> sha256 hex)."""
    expected = clients.get(client_id or "")
    given = secret_digest(secret or "")
    if expected is None:
        hmac.compare_digest(given, given)  # same work whether or not the id exists
        return False
    return hmac.compare_digest(given.encode(), expected.strip().lower().encode())


def _alpaca_error(status: int, code: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class Passthrough:
    """Forwards allow-listed GETs with the hub's key through the shared token bucket."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        s = hub.settings
        self.bases = {
            "data": s.alpaca_data_url.rstrip("/"),
            "trading": s.alpaca_trading_url.rstrip("/"),
        }
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        self.calls = hub.metrics.passthrough_requests

    async def close(self) -> None:
        """Close the upstream connection pool."""
        await self.http.aclose()

    async def forward(self, route: Route, path: str, query: str) -> Response:
        """One caller request: up to `rest_max_retries` retries of a 429, each paced."""
        h = self.hub
        key = h.keys.key
        if key is None:
            self.calls.labels(route.template, "no_key").inc()
            return _alpaca_error(503, 50300000, "hub has no Alpaca key", **{"Retry-After": "5"})
        url = self.bases[route.api] + path + (f"?{query}" if query else "")
        headers = {
            "APCA-API-KEY-ID": key.key_id,
            "APCA-API-SECRET-KEY": key.secret_key.get_secret_value(),
            "Accept": "application/json",
        }
        budget, retries = h.rest.budget, h.settings.rest_max_retries
        resp: httpx.Response | None = None
        retry_after = 1.0
        for attempt in range(retries + 1):
            try:
                async with asyncio.timeout(h.settings.passthrough_max_wait_seconds):
                    waited = await budget.acquire_internal()
            except TimeoutError:
                self.calls.labels(route.template, "budget_timeout").inc()
                h.metrics.rate_limited.labels("passthrough_wait").inc()
                return _alpaca_error(
                    429, 42910000, "hub REST budget busy; retry", **{"Retry-After": "5"}
                )
            h.metrics.rest_limiter_wait.observe(waited)
            try:
                resp = await self.http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                self.calls.labels(route.template, "unreachable").inc()
                log.warning("passthrough %s: upstream unreachable (%s)", route.template,
                            type(exc).__name__)  # fmt: skip
                return _alpaca_error(
                    503, 50300000, "Alpaca unreachable from the hub", **{"Retry-After": "5"}
                )
            if resp.status_code != 429:
                break
            retry_after = _reset_in(resp) or min(2.0**attempt, 8.0)
            budget.drain(retry_after)
            h.metrics.rest_calls.labels("passthrough", "429").inc()
            if attempt < retries:
                await asyncio.sleep(min(retry_after, 10.0))
        assert resp is not None  # noqa: S101 - the loop ran at least once
        status = resp.status_code
        outcome = "ok" if status < 400 else str(status)
        self.calls.labels(route.template, outcome).inc()
        h.metrics.rest_calls.labels("passthrough", "ok" if status < 400 else str(status)).inc()
        out_headers = {k: v for k in PASSED_HEADERS if (v := resp.headers.get(k)) is not None}
        if status == 429:
            out_headers["Retry-After"] = str(max(1, round(retry_after)))
        if status >= 400:
            # An upstream (or a proxy in front of it) may answer with stack traces or internal
            # addresses: the caller gets Alpaca's numeric code and a fixed message (alpaca-py
            # acts on the status), the log gets the body.
            log.warning("passthrough %s: upstream answered %d: %r", route.template, status,
                        resp.content[:300])  # fmt: skip
            kept = {k: v for k, v in out_headers.items() if k != "content-type"}
            return _alpaca_error(status, _alpaca_code(resp), _safe_message(status), **kept)
        return Response(content=resp.content, status_code=status, headers=out_headers)


def _alpaca_code(resp: httpx.Response) -> int:
    """Alpaca's numeric error code from its body, else the status x 100000."""
    try:
        code = resp.json().get("code")
    except (ValueError, AttributeError):
        code = None
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return resp.status_code * 100_000


def _safe_message(status: int) -> str:
    if status == 429:
        return "rate limited by Alpaca; retry"
    if status in (401, 403):
        return "Alpaca refused the hub's request (key or plan)"
    if status == 404:
        return "not found at Alpaca"
    if status < 500:
        return "Alpaca rejected the request (check its parameters)"
    return "Alpaca upstream error"


def _reset_in(resp: httpx.Response) -> float | None:
    """The wait a 429 asks for: `X-RateLimit-Reset` (epoch seconds) or `Retry-After`."""
    return retry_wait(resp.headers.get("retry-after"), resp.headers.get("x-ratelimit-reset"))


@router.api_route(
    "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
)
async def passthrough(path: str, request: Request) -> Response:
    """Alpaca REST for internal clients: allow-listed GETs only, service-client auth."""
    h: Hub = request.app.state.hub
    # The decoded request path, not the `path` parameter: Starlette's route regex ends in `$`
    # too, so a trailing newline (`%0a`) is silently cut from the parameter.
    full = str(request.scope.get("path", "")).removeprefix(router.prefix)
    route = match(full)
    if route is None:
        h.metrics.passthrough_requests.labels("other", "not_allowed").inc()
        return _alpaca_error(404, 40410000, "endpoint not available through the hub")
    if request.method != "GET":
        h.metrics.passthrough_requests.labels(route.template, "method").inc()
        return _alpaca_error(405, 40510000, "method not allowed", Allow="GET")
    client_id = request.headers.get("apca-api-key-id")
    secret = request.headers.get("apca-api-secret-key")
    if not client_ok(h.service_clients.clients, client_id, secret):
        h.metrics.passthrough_requests.labels(route.template, "unauthorized").inc()
        return _alpaca_error(401, 40110000, "request is not authorized")
    if h.passthrough is None:
        return _alpaca_error(503, 50300000, "hub is starting", **{"Retry-After": "5"})
    return await h.passthrough.forward(route, full, request.url.query)
