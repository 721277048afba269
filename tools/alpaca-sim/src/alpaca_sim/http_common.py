"""Shared HTTP pieces: Alpaca-shaped errors, parameter parsing, auth, rate limits, faults."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.keys import IDENTITY_KEY, SIM_KEY
from alpaca_sim.protocol import ENDPOINTS, STOCK_SYMBOL_RE

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PREFIXES = ("/sim/", "/oauth/", "/healthz", "/readyz", "/metrics")
DATA_PREFIXES = (
    "/v2/stocks",
    "/v1beta1/options",
    "/v1/corporate-actions",
    "/v1beta1/corporate-actions",
)
FRACTION_RE = re.compile(r"\.(\d{6})\d+")
STATUS_TEXT = {
    400: "bad request",
    401: "request is not authorized",
    403: "forbidden",
    404: "not found",
    422: "unprocessable entity",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


class ApiError(Exception):
    """An error answered as `{"code": ..., "message": ...}`."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code if code is not None else status * 100_000
        self.message = message


def json_response(body: Any, status: int = 200) -> web.Response:
    """orjson-encoded JSON."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, message: str, code: int | None = None) -> web.Response:
    """Alpaca's error shape."""
    return json_response({"code": code or status * 100_000, "message": message}, status)


def parse_time(text: str | None, default: datetime, name: str) -> datetime:
    """RFC 3339 (any fraction, Z or offset) or YYYY-MM-DD (midnight New York)."""
    if not text:
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), NY)
        dt = datetime.fromisoformat(FRACTION_RE.sub(r".\1", text.replace(" ", "+")))
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}: {text}", 40010001) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_int(text: str | None, default: int, lo: int, hi: int, name: str) -> int:
    """An integer parameter within [lo, hi]."""
    if text in (None, ""):
        return default
    try:
        value = int(str(text))
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}: {text}", 40010001) from exc
    if not lo <= value <= hi:
        raise ApiError(422, f"invalid {name}: must be between {lo} and {hi}", 42210000)
    return value


def parse_symbols(text: str | None, check: Callable[[str], bool] | None = None) -> list[str]:
    """The `symbols` list (required), de-duplicated, sorted as Alpaca pages them."""
    if not text:
        raise ApiError(400, "missing symbols", 40010001)
    symbols = sorted({s.strip().upper() for s in text.split(",") if s.strip()})
    check = check or (lambda s: bool(STOCK_SYMBOL_RE.match(s)))
    bad = [s for s in symbols if not check(s)]
    if bad:
        raise ApiError(400, f"invalid symbol: {bad[0]}", 40010001)
    return symbols


def encode_token(symbol: str, t_ns: int) -> str:
    """Opaque `next_page_token`: where the next page starts."""
    return base64.urlsafe_b64encode(orjson.dumps([symbol, t_ns])).decode()


def decode_token(token: str | None) -> tuple[str, int] | None:
    """Inverse of `encode_token`; 400 when it is not one of ours."""
    if not token:
        return None
    try:
        symbol, t_ns = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return str(symbol), int(t_ns)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid page_token", 40010001) from exc


def identity_of(sim: SimState, request: web.Request) -> str | None:
    """Key id for API-key auth, `oauth:<account>` for a bearer token, else None."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        tok = sim.oauth.token(auth[7:].strip())
        return f"oauth:{tok.account_id}" if tok else None
    key: str | None = request.headers.get("APCA-API-KEY-ID")
    secret: str | None
    if auth.startswith("Basic "):
        try:
            key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
    else:
        secret = request.headers.get("APCA-API-SECRET-KEY")
    return key if sim.check_key(key, secret) else None


class RateLimiter:
    """Fixed one-minute windows per (identity, API)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}

    def hit(self, who: str, api: str) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, X-RateLimit-* headers)."""
        window = int(time.time() // 60)
        start, used = self._windows.get((who, api), (window, 0))
        if start != window:
            start, used = window, 0
        used += 1
        self._windows[(who, api)] = (start, used)
        limit = self.per_minute or 1_000_000
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - used, 0)),
            "X-RateLimit-Reset": str((window + 1) * 60),
        }
        return used <= limit, headers


@web.middleware
async def rest_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Call counting, injected faults, auth and the per-key rate limit for the Alpaca APIs."""
    sim: SimState = request.app[SIM_KEY]
    path = request.path
    if path.startswith(OPEN_PREFIXES) or path in ENDPOINTS:
        return await handler(request)
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource else path
    if "kind" in request.match_info:  # one counter per data kind, not one for all three
        canonical = canonical.replace("{kind}", request.match_info["kind"])
    route = f"{request.method} {canonical}"
    sim.rest_calls[route] += 1
    api = "data" if path.startswith(DATA_PREFIXES) else "trading"
    who = identity_of(sim, request)
    status = sim.faults.take_rest_fault(path)
    headers: dict[str, str] = {}
    if status is not None:
        resp: web.StreamResponse = error_response(status, STATUS_TEXT.get(status, "injected fault"))
        if status == 429:
            reset = int(sim.faults.rest_until or time.time() + 1)
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
            if sim.faults.retry_after:
                resp.headers["Retry-After"] = "1"
    elif who is None:
        resp = error_response(401, "request is not authorized", 40110000)
    else:
        allowed, headers = sim.rate_limiter.hit(who, api)
        if not allowed:
            resp = error_response(429, "rate limit exceeded", 42910000)
        else:
            request[IDENTITY_KEY] = who
            try:
                resp = await handler(request)
            except ApiError as exc:
                resp = error_response(exc.status, exc.message, exc.code)
    for k, v in headers.items():
        resp.headers[k] = v
    sim.metrics.rest_requests.labels(route, str(resp.status)).inc()
    return resp
