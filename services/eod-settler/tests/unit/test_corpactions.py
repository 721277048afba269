"""Normalising Alpaca's corporate actions into the contract's fields (pure)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from eod_settler.corpactions import effective_date, normalise
from raxx_contracts import CorporateActionType

ID = "8a9f5c36-0d3c-4b8e-9d55-3e0a1c9e7a01"


def test_spin_off_publishes_under_the_source_with_both_symbols_and_rates() -> None:
    n = normalise(
        "spin_offs",
        {"id": ID, "source_symbol": "GE", "source_cusip": "1", "source_rate": 1,
         "new_symbol": "GEV", "new_cusip": "2", "new_rate": 0.25, "process_date": "2024-04-02",
         "ex_date": "2024-04-02", "record_date": "2024-03-19", "payable_date": "2024-04-02"},
    )  # fmt: skip
    assert n is not None
    assert (n.symbol, n.type) == ("GE", CorporateActionType.SPIN_OFF)
    assert n.fields["old_symbol"] == "GE"
    assert n.fields["new_symbol"] == "GEV"
    assert (n.fields["old_rate"], n.fields["new_rate"]) == (Decimal(1), Decimal("0.25"))
    assert effective_date(n) == dt.date(2024, 4, 2)


def test_merger_is_effective_on_its_effective_date_under_the_acquiree() -> None:
    n = normalise(
        "stock_and_cash_mergers",
        {"id": ID, "acquirer_symbol": "AAA", "acquirer_cusip": "1", "acquirer_rate": 0.5,
         "acquiree_symbol": "BBB", "acquiree_cusip": "2", "acquiree_rate": 1, "cash_rate": 10.5,
         "process_date": "2025-03-04", "effective_date": "2025-03-03"},
    )  # fmt: skip
    assert n is not None
    assert n.symbol == "BBB"
    assert n.fields["cash_rate"] == Decimal("10.5")
    assert effective_date(n) == dt.date(2025, 3, 3)


def test_stock_dividend_rate_and_a_changed_field_changes_the_hash() -> None:
    raw = {"id": ID, "symbol": "X", "cusip": "1", "rate": 0.05, "process_date": "2025-01-02",
           "ex_date": "2025-01-02"}  # fmt: skip
    n = normalise("stock_dividends", raw)
    assert n is not None
    assert n.fields["stock_rate"] == Decimal("0.05")
    m = normalise("stock_dividends", {**raw, "payable_date": "2025-01-10"})
    assert m is not None
    assert m.content_hash() != n.content_hash()
    assert normalise("stock_dividends", dict(raw)).content_hash() == n.content_hash()  # type: ignore[union-attr]


def test_types_mbt_does_not_apply_and_actions_without_id_are_skipped() -> None:
    assert (
        normalise("worthless_removals", {"id": ID, "symbol": "X", "process_date": "2025-01-02"})
        is None
    )
    assert (
        normalise("cash_dividends", {"symbol": "X", "rate": 1, "process_date": "2025-01-02"})
        is None
    )
    assert normalise("bogus_things", {"id": ID}) is None
