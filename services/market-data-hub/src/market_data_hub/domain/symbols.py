"""Which symbols the hub accepts per asset class (before any upstream call)."""

from __future__ import annotations

import re
from typing import NamedTuple

from raxx_contracts import AssetClass, InvalidSymbolError, encode_symbol

_STOCK = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[./][A-Z0-9]{1,4})?")
_OCC = re.compile(r"[A-Z][A-Z0-9]{0,5}\d{6}[CP]\d{8}")


class SymbolCheck(NamedTuple):
    """Outcome of :func:`check_symbol`: `ok`, or a human-readable reason."""

    ok: bool
    reason: str = ""


def check_symbol(asset: AssetClass, symbol: str) -> SymbolCheck:
    """Validate an equity ticker (`AAPL`, `BRK.B`) or an OCC option symbol."""
    try:
        encode_symbol(symbol)
    except InvalidSymbolError as exc:
        return SymbolCheck(False, str(exc))
    if asset is AssetClass.STOCKS and not _STOCK.fullmatch(symbol):
        return SymbolCheck(False, f"{symbol!r} is not an equity ticker (e.g. AAPL, BRK.B)")
    if asset is AssetClass.OPTIONS and not _OCC.fullmatch(symbol):
        return SymbolCheck(False, f"{symbol!r} is not an OCC option symbol (AAPL240315C00172500)")
    return SymbolCheck(True)


def underlying_ok(symbol: str) -> bool:
    """Whether `symbol` can be an option chain's underlying."""
    return check_symbol(AssetClass.STOCKS, symbol).ok
