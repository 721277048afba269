"""HTTP routes: `GET /v1/settles/{date}`, health, readiness and metrics."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from raxx_contracts import NanoDatetime

from eod_settler.runtime import Runtime

router = APIRouter()


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def get_runtime(request: Request) -> Runtime | None:
    """The app's runtime (None until the lifespan opened it)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    return rt


RuntimeDep = Annotated[Runtime | None, Depends(get_runtime)]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request, rt: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """200 when Postgres and NATS answer and background tasks run; else 503 naming what is down."""
    if rt is None:
        return _error(503, "not_ready", "starting")
    checks: dict[str, str] = {}
    if rt.store.outage is not None:
        checks["postgres"] = f"down: {rt.store.outage}"  # known without waiting
    else:
        try:
            await rt.store.ping()  # bounded (the store's operation deadline)
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"down: {type(exc).__name__}: {exc}"[:200]
    checks["nats"] = "ok" if rt.nc.is_connected else "down"
    tasks: dict[str, str] = getattr(request.app.state, "tasks", {})
    checks.update({f"task:{k}": v for k, v in tasks.items()})
    bad = {k: v for k, v in checks.items() if v not in ("ok", "running")}
    if bad:
        return _error(
            503, "not_ready", "; ".join(f"{k} {v}" for k, v in bad.items()), checks=checks
        )
    return {"status": "ready", "checks": checks}


@router.get("/metrics")
async def metrics(rt: RuntimeDep, request: Request) -> Response:
    """Prometheus text from the app's own registry."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _settle_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "symbol": row["symbol"],
        "timestamp": NanoDatetime.from_datetime(row["session_close"]).rfc3339(),
        "date": row["date"].isoformat(),
        "asset_class": row["asset_class"],
        "price": str(row["price"]),
        "source": row["source"],
        "feed": row["feed"],
        "revision": row["revision"],
        "stale": row["stale"],
        "computed_at": NanoDatetime.from_datetime(row["computed_at"]).rfc3339(),
    }


@router.get("/v1/settles/{date}", response_model=None)
async def settles_for_date(date: str, rt: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """The date's settles (latest revision of each symbol) from Postgres."""
    try:
        day = dt.date.fromisoformat(date)
        if len(date) != 10:
            raise ValueError(date)
    except ValueError:
        return _error(400, "bad_date", f"not a date (YYYY-MM-DD): {date!r}")
    if rt is None:
        return _error(503, "not_ready", "starting")
    rows = await rt.store.settles_for_date(day)
    if not rows:
        return _error(404, "not_found", f"no settles for {day.isoformat()}")
    return {"date": day.isoformat(), "count": len(rows), "settles": [_settle_json(r) for r in rows]}
