"""Test-control API: faults, state, publish, runtime config; plus health and metrics."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alpaca_sim.http_common import error_response, json_response
from alpaca_sim.keys import SIM_KEY
from alpaca_sim.protocol import ERRORS, ts
from alpaca_sim.ticks import publish

if TYPE_CHECKING:
    from alpaca_sim.state import SimState


def _sim(request: web.Request) -> SimState:
    sim: SimState = request.app[SIM_KEY]
    return sim


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="body must be JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def post_faults(request: web.Request) -> web.Response:
    """`POST /sim/faults`: switch faults on/off or trigger one-shot stream faults."""
    sim = _sim(request)
    body = await _body(request)
    f = sim.faults
    actions: list[str] = []
    if body.get("reset"):
        f.rest_status, f.rest_remaining, f.rest_path_prefix = None, 0, None
        f.rest_until, f.retry_after = 0.0, True
        f.silent_until = sim.engine.silent_until = 0.0
        f.symbol_cap, f.refuse_symbols = None, frozenset()
        actions.append("reset")
    if "symbol_cap" in body:
        cap = body["symbol_cap"]
        f.symbol_cap = int(cap) if cap is not None else None
        actions.append(f"symbol_cap={cap}")
    if "refuse_symbols" in body:
        f.refuse_symbols = frozenset(str(x) for x in body["refuse_symbols"] or ())
        actions.append(f"refuse_symbols={sorted(f.refuse_symbols)}")
    if "rest_status" in body:
        status = body["rest_status"]
        if status is not None and not 400 <= int(status) <= 599:
            return error_response(400, "rest_status must be 4xx or 5xx")
        f.rest_status = int(status) if status is not None else None
        f.rest_remaining = int(body.get("count", 1)) if status is not None else 0
        f.rest_path_prefix = body.get("path_prefix")
        f.retry_after = bool(body.get("retry_after", True))
        f.rest_until = 0.0
        if status is not None and body.get("seconds") is not None:
            # a time window (like Alpaca's rate window): every matching request until the end
            # of it, which `X-RateLimit-Reset` names in whole epoch seconds
            f.rest_until = float(math.ceil(time.time() + float(body["seconds"])))
            f.rest_remaining = 1_000_000_000
        actions.append(f"rest_status={status} x{f.rest_remaining}")
    if "silence_seconds" in body:
        f.silent_until = sim.engine.silent_until = time.time() + float(body["silence_seconds"])
        actions.append(f"silence {body['silence_seconds']}s")
    endpoint = body.get("endpoint")
    if body.get("send_error") is not None:
        code = int(body["send_error"])
        if code not in ERRORS:
            return error_response(400, f"unknown stream error code {code}")
        n = sim.engine.send_error(code, endpoint)
        actions.append(f"send_error {code} to {n}")
    if body.get("malformed_frames"):
        n = sim.engine.malformed(int(body["malformed_frames"]))
        actions.append(f"malformed_frames {body['malformed_frames']} to {n}")
    if body.get("drop_connections"):
        n = sim.engine.drop_all()
        actions.append(f"dropped {n}")
    f.last_actions = actions
    return json_response(f.describe())


async def get_faults(request: web.Request) -> web.Response:
    """`GET /sim/faults`."""
    return json_response(_sim(request).faults.describe())


async def get_state(request: web.Request) -> web.Response:
    """`GET /sim/state`: stream sessions with their subscriptions, REST call counters."""
    sim = _sim(request)
    conns = [c.describe() for c in sim.engine.connections]
    for c in conns:
        c["subscriptions"].pop("T", None)
    return json_response(
        {
            "connections": conns,
            "rest_calls": dict(sim.rest_calls),
            "stream_connects": dict(sim.stream_connects),
            "plan": sim.settings.plan,
            "feeds": list(sim.settings.feeds),
            "rate": sim.engine.rate,
            "faults": sim.faults.describe(),
            "accounts": len(sim.broker.accounts),
            "oauth_tokens": len(sim.oauth.tokens),
        }
    )


async def post_publish(request: web.Request) -> web.Response:
    """`POST /sim/publish`: push one trade, quote, bar, status, correction, cancel, luld or
    imbalance for a symbol to its listeners (corrections and cancels move the day's close)."""
    sim = _sim(request)
    body = await _body(request)
    if not isinstance(body.get("symbol"), str) or not isinstance(body.get("type"), str):
        return error_response(400, "symbol and type are required")
    try:
        delivered = publish(sim.engine, body, time.time_ns())
    except (KeyError, ValueError, TypeError) as exc:
        return error_response(400, f"bad publish request: {exc}")
    return json_response({"delivered": delivered})


async def post_config(request: web.Request) -> web.Response:
    """`POST /sim/config`: change the message rate at run time (`{"rate": 0}` pauses the walk)."""
    sim = _sim(request)
    body = await _body(request)
    if "rate" in body:
        sim.engine.rate = max(0.0, float(body["rate"]))
    if body.get("reset_counters"):
        sim.rest_calls.clear()
        sim.stream_connects.clear()
    return json_response({"rate": sim.engine.rate})


async def healthz(request: web.Request) -> web.Response:
    """Liveness."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the ticker runs."""
    sim = _sim(request)
    if not sim.engine.running:
        return json_response({"status": "starting"}, status=503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text."""
    body = generate_latest(_sim(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes() -> list[web.RouteDef]:
    """Control and operations routes."""
    return [
        web.post("/sim/faults", post_faults),
        web.get("/sim/faults", get_faults),
        web.get("/sim/state", get_state),
        web.post("/sim/publish", post_publish),
        web.post("/sim/config", post_config),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]


__all__ = ["routes", "ts"]
