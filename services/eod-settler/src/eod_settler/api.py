"""HTTP routes of the settler: `GET /v1/settles/{date}` (health, readiness and metrics come
from the kit's health router, errors from its error handlers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from raxx_contracts import NanoDatetime
from raxx_service_kit.errors import ServiceError

from eod_settler.runtime import Runtime

router = APIRouter()


class Starting(ServiceError):
    """The app is up but its lifespan has not opened the runtime yet."""

    def __init__(self) -> None:
        super().__init__("not_ready", 503, "starting")
        self.retry_after = 2.0


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (503 `not_ready` until the lifespan opened it)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise Starting()
    return rt


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


def _day(date: str) -> dt.date:
    try:
        if len(date) != 10:
            raise ValueError(date)
        return dt.date.fromisoformat(date)
    except ValueError:
        raise ServiceError("bad_date", 400, f"not a date (YYYY-MM-DD): {date[:40]!r}") from None


@router.get("/v1/settles/{date}")
async def settles_for_date(date: str, request: Request) -> dict[str, Any]:
    """The date's settles (latest revision of each symbol) from Postgres."""
    day = _day(date)
    rt = get_runtime(request)
    rows = await rt.store.settles_for_date(day)
    if not rows:
        raise ServiceError("not_found", 404, f"no settles for {day.isoformat()}")
    return {"date": day.isoformat(), "count": len(rows), "settles": [_settle_json(r) for r in rows]}
