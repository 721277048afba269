"""Market-data messages published on `md.rt.*` and `md.delayed.*` (schema version 1)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from raxx_contracts._base import Symbol, WireModel
from raxx_contracts.enums import BarKind
from raxx_contracts.timestamps import NanoDatetime


class _MarketEvent(WireModel):
    schema_version: Literal[1] = 1
    symbol: Symbol
    timestamp: NanoDatetime
    feed: str
    """Upstream feed the event came from (`iex`, `sip`, `delayed_sip`, `indicative`, `opra`)."""


class Quote(_MarketEvent):
    """Top-of-book quote for an equity."""

    bid_price: Decimal
    bid_size: int
    bid_exchange: str = ""
    ask_price: Decimal
    ask_size: int
    ask_exchange: str = ""
    conditions: tuple[str, ...] = ()
    tape: str = ""


class Trade(_MarketEvent):
    """A trade print for an equity."""

    price: Decimal
    size: int
    exchange: str = ""
    trade_id: int | None = None
    conditions: tuple[str, ...] = ()
    tape: str = ""


class Bar(_MarketEvent):
    """An OHLCV bar; `timestamp` is the bar start. `backfill` marks bars recovered over REST."""

    kind: BarKind = BarKind.MINUTE
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trade_count: int | None = None
    vwap: Decimal | None = None
    backfill: bool = False


class TradingStatus(_MarketEvent):
    """A halt / resume / LULD status change for an equity."""

    status_code: str
    status_message: str = ""
    reason_code: str = ""
    reason_message: str = ""
    tape: str = ""


class OptionQuote(_MarketEvent):
    """Top-of-book quote for an option contract (OCC symbol)."""

    bid_price: Decimal
    bid_size: int
    bid_exchange: str = ""
    ask_price: Decimal
    ask_size: int
    ask_exchange: str = ""
    condition: str = ""


class OptionTrade(_MarketEvent):
    """A trade print for an option contract (OCC symbol)."""

    price: Decimal
    size: int
    exchange: str = ""
    condition: str = ""


MarketEvent = Quote | Trade | Bar | TradingStatus | OptionQuote | OptionTrade
