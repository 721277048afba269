"""Fidelity: alpaca-py's CorporateActionsClient parses the sim's `/v1/corporate-actions`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any

from alpaca.data.enums import CorporateActionsType
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.models.corporate_actions import CashDividend, ForwardSplit, NameChange
from alpaca.data.requests import CorporateActionsRequest

from .conftest import Sim

JAN5 = date(2026, 1, 5)
IDS = [str(uuid.UUID(int=i + 1)) for i in range(7)]


def client(sim: Sim, raw: bool = False) -> CorporateActionsClient:
    return CorporateActionsClient("sim-key", "sim-secret", raw_data=raw, url_override=sim.url)


async def test_alpaca_py_parses_the_seeded_split_and_dividend(sim: Sim) -> None:
    req = CorporateActionsRequest(symbols=["AAPL"], start=JAN5, end=JAN5)
    got: Any = await asyncio.to_thread(client(sim).get_corporate_actions, req)
    split = got.data["forward_splits"]
    div = got.data["cash_dividends"]
    assert len(split) == 1
    assert isinstance(split[0], ForwardSplit)
    assert (split[0].symbol, split[0].new_rate, split[0].old_rate) == ("AAPL", 4, 1)
    assert split[0].ex_date == JAN5
    assert len(div) == 1
    assert isinstance(div[0], CashDividend)
    assert div[0].rate == 0.26
    assert div[0].payable_date == date(2026, 1, 12)
    assert set(got.data) == {"forward_splits", "cash_dividends"}


async def test_filters_types_and_symbol_changes(sim: Sim) -> None:
    day = date(2026, 1, 6)
    only = CorporateActionsRequest(
        symbols=["MSFT"], types=[CorporateActionsType.NAME_CHANGE], start=day, end=day
    )
    got: Any = await asyncio.to_thread(client(sim).get_corporate_actions, only)
    (change,) = got.data["name_changes"]
    assert isinstance(change, NameChange)
    assert (change.old_symbol, change.new_symbol) == ("MSFT", "MSFX")
    none = CorporateActionsRequest(symbols=["AAPL"], start=day, end=day)
    assert (await asyncio.to_thread(client(sim).get_corporate_actions, none)).data == {}


async def test_added_actions_paginate_as_alpaca_does_and_alpaca_py_follows(sim: Sim) -> None:
    for i in range(7):
        r = await sim.post(
            "/sim/corporate-actions",
            {"type": "cash_dividend", "id": IDS[i], "symbol": "ZZZ", "cusip": "000000000",
             "rate": 0.01 * (i + 1), "special": False, "foreign": False,
             "process_date": "2026-02-02", "ex_date": "2026-02-02"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
    first = await sim.get(
        "/v1/corporate-actions",
        params={"symbols": "ZZZ", "start": "2026-02-02", "end": "2026-02-02", "limit": 3},
    )
    body = first.json()
    assert len(body["corporate_actions"]["cash_dividends"]) == 3
    assert body["next_page_token"]
    # alpaca-py pages with limit 1000 itself; a smaller request limit is honoured page by page.
    req = CorporateActionsRequest(
        symbols=["ZZZ"], start=date(2026, 2, 2), end=date(2026, 2, 2), limit=5
    )
    got: Any = await asyncio.to_thread(client(sim, raw=True).get_corporate_actions, req)
    assert [d["id"] for d in got["cash_dividends"]] == IDS[:5]
    # every page, as alpaca-py follows next_page_token
    calls0 = sim.state.rest_calls["GET /v1/corporate-actions"]
    pages: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"symbols": "ZZZ", "start": "2026-02-02", "end": "2026-02-02",
                                  "limit": 2}  # fmt: skip
        if token:
            params["page_token"] = token
        b = (await sim.get("/v1/corporate-actions", params=params)).json()
        pages += [d["id"] for d in b["corporate_actions"].get("cash_dividends", [])]
        token = b["next_page_token"]
        if not token:
            break
    assert pages == IDS
    assert sim.state.rest_calls["GET /v1/corporate-actions"] - calls0 == 4
    # re-posting an id replaces the action (Alpaca revised it)
    await sim.post(
        "/sim/corporate-actions",
        {"type": "cash_dividend", "id": IDS[0], "symbol": "ZZZ", "cusip": "000000000",
         "rate": 0.5, "special": True, "foreign": False, "process_date": "2026-02-02",
         "ex_date": "2026-02-02"},
    )  # fmt: skip
    again: Any = await asyncio.to_thread(
        client(sim).get_corporate_actions,
        CorporateActionsRequest(ids=[IDS[0]]),
    )
    (div,) = again.data["cash_dividends"]
    assert div.rate == 0.5
    assert div.special is True


async def test_requires_auth_and_rejects_bad_parameters(sim: Sim) -> None:
    assert (await sim.get("/v1/corporate-actions", headers={})).status_code == 401
    r = await sim.get("/v1/corporate-actions", params={"types": "bogus"})
    assert r.status_code == 400
    r = await sim.get("/v1/corporate-actions", params={"limit": "5000"})
    assert r.status_code == 422
    r = await sim.post("/sim/corporate-actions", {"type": "cash_dividend", "id": "x",
                                                  "process_date": "2026-01-05"})  # fmt: skip
    assert r.status_code == 400
