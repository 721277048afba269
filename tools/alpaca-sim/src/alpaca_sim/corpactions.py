"""Corporate actions (`GET /v1/corporate-actions`): a fixed seeded set plus actions added by
tests through `POST /sim/corporate-actions`, in Alpaca's shape and pagination."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from aiohttp import web

from alpaca_sim.calendar import NY
from alpaca_sim.http_common import ApiError, json_response, parse_int

TYPES = (
    "reverse_split", "forward_split", "unit_split", "cash_dividend", "stock_dividend",
    "spin_off", "cash_merger", "stock_merger", "stock_and_cash_merger", "redemption",
    "name_change", "worthless_removal", "rights_distribution",
)  # fmt: skip
SYMBOL_FIELDS = (
    "symbol", "old_symbol", "new_symbol", "source_symbol", "acquirer_symbol", "acquiree_symbol",
    "alternate_symbol",
)  # fmt: skip
_NS = uuid.UUID("5f0c8d8e-8a53-4b55-9a38-0a1c1e5c0a11")


def _id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{key}"))


def seeded() -> list[tuple[str, dict[str, Any]]]:
    """The fixed set every sim starts with (documented in the README)."""
    return [
        # Apple's real 4:1 split of 2020.
        (
            "forward_split",
            {
                "id": _id("forward_split", "AAPL:2020-08-31"),
                "symbol": "AAPL",
                "cusip": "037833100",
                "new_rate": 4,
                "old_rate": 1,
                "process_date": "2020-08-31",
                "ex_date": "2020-08-31",
                "record_date": "2020-08-24",
                "payable_date": "2020-08-28",
            },
        ),
        # The sim's own: a 4:1 split and a cash dividend of AAPL effective 2026-01-05 (Monday).
        (
            "forward_split",
            {
                "id": _id("forward_split", "AAPL:2026-01-05"),
                "symbol": "AAPL",
                "cusip": "037833100",
                "new_rate": 4,
                "old_rate": 1,
                "process_date": "2026-01-05",
                "ex_date": "2026-01-05",
                "record_date": "2025-12-29",
                "payable_date": "2026-01-02",
            },
        ),
        (
            "cash_dividend",
            {
                "id": _id("cash_dividend", "AAPL:2026-01-05"),
                "symbol": "AAPL",
                "cusip": "037833100",
                "rate": 0.26,
                "special": False,
                "foreign": False,
                "process_date": "2026-01-12",
                "ex_date": "2026-01-05",
                "record_date": "2026-01-05",
                "payable_date": "2026-01-12",
            },
        ),
        # A 1:10 reverse split and a name change (MSFT -> MSFX) on 2026-01-06 (Tuesday).
        (
            "reverse_split",
            {
                "id": _id("reverse_split", "TSLA:2026-01-06"),
                "symbol": "TSLA",
                "old_cusip": "88160R101",
                "new_cusip": "88160R102",
                "new_rate": 1,
                "old_rate": 10,
                "process_date": "2026-01-06",
                "ex_date": "2026-01-06",
                "record_date": "2026-01-05",
                "payable_date": "2026-01-06",
            },
        ),
        (
            "name_change",
            {
                "id": _id("name_change", "MSFT:2026-01-06"),
                "old_symbol": "MSFT",
                "old_cusip": "594918104",
                "new_symbol": "MSFX",
                "new_cusip": "594918105",
                "process_date": "2026-01-06",
            },
        ),
    ]


def effective(action: dict[str, Any]) -> str:
    """The date an action is filtered and sorted by: ex-date, else effective, else process."""
    return str(action.get("ex_date") or action.get("effective_date") or action["process_date"])


@dataclass
class CorporateActions:
    """Every action the sim knows, by id (a re-posted id replaces the action: a revision)."""

    actions: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, action in seeded():
            self.actions[action["id"]] = (kind, action)

    def add(self, kind: str, action: dict[str, Any]) -> dict[str, Any]:
        """Add or replace one action; returns it (with its id)."""
        if kind not in TYPES:
            raise web.HTTPBadRequest(text=f"unknown corporate action type {kind!r}")
        if not action.get("process_date"):
            raise web.HTTPBadRequest(text="process_date is required")
        action = dict(action)
        action.setdefault("id", str(uuid.uuid4()))
        try:  # Alpaca's ids are UUIDs (alpaca-py parses them as such)
            action["id"] = str(uuid.UUID(str(action["id"])))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="id must be a UUID") from exc
        self.actions[str(action["id"])] = (kind, action)
        return action


CORP_KEY = web.AppKey("corporate_actions", CorporateActions)


def _csv(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _day(text: str | None, default: date, name: str) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}: {text}", 40010001) from exc


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(["ca", offset])).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        tag, offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if tag != "ca":
            raise ValueError(tag)
        return int(offset)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid page_token", 40010001) from exc


async def get_corporate_actions(request: web.Request) -> web.Response:
    """Alpaca's `/v1/corporate-actions`: filters, `limit` (1..1000, default 100), `sort`,
    `page_token`; the answer groups actions by plural type."""
    q = request.query
    store = request.app[CORP_KEY]
    ids = set(_csv(q.get("ids")))
    if ids and any(q.get(k) for k in ("symbols", "cusips", "types", "start", "end")):
        raise ApiError(400, "ids is mutually exclusive with the other filters", 40010001)
    today = datetime.now(NY).date()
    start = _day(q.get("start"), today, "start")
    end = _day(q.get("end"), today, "end")
    symbols = {s.upper() for s in _csv(q.get("symbols"))}
    cusips = set(_csv(q.get("cusips")))
    types = set(_csv(q.get("types")))
    if bad := types - set(TYPES):
        raise ApiError(400, f"invalid types: {sorted(bad)[0]}", 40010001)
    limit = parse_int(q.get("limit"), 100, 1, 1000, "limit")
    sort = q.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise ApiError(400, f"invalid sort: {sort}", 40010001)
    matched: list[tuple[str, dict[str, Any]]] = []
    for kind, action in store.actions.values():
        if ids:
            if action["id"] in ids:
                matched.append((kind, action))
            continue
        if not start.isoformat() <= effective(action) <= end.isoformat():
            continue
        if types and kind not in types:
            continue
        if symbols and not symbols & {str(action.get(f)) for f in SYMBOL_FIELDS}:
            continue
        if cusips and not cusips & {str(v) for k, v in action.items() if k.endswith("cusip")}:
            continue
        matched.append((kind, action))
    matched.sort(key=lambda ka: (effective(ka[1]), ka[1]["id"]), reverse=sort == "desc")
    offset = _offset(q.get("page_token"))
    page = matched[offset : offset + limit]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for kind, action in page:
        grouped.setdefault(f"{kind}s", []).append(action)
    more = offset + limit < len(matched)
    return json_response(
        {"corporate_actions": grouped, "next_page_token": _token(offset + limit) if more else None}
    )


async def post_corporate_action(request: web.Request) -> web.Response:
    """`POST /sim/corporate-actions` `{"type": "cash_dividend", "symbol": ..., ...}`: add an
    action, or replace the one with the same `id` (Alpaca revised it)."""
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="body must be JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    kind = str(body.pop("type", ""))
    action = request.app[CORP_KEY].add(kind, body)
    return json_response({"type": kind, **action})


def install(app: web.Application) -> None:
    """Routes and state (`/v1beta1/corporate-actions` is the older path of the same API)."""
    app[CORP_KEY] = CorporateActions()
    app.router.add_get("/v1/corporate-actions", get_corporate_actions)
    app.router.add_get("/v1beta1/corporate-actions", get_corporate_actions)
    app.router.add_post("/sim/corporate-actions", post_corporate_action)
