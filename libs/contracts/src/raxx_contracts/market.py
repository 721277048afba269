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
    """Top-of-book quote for an equity. Sizes are in shares (Alpaca's unit since 2025-11-03).

    A side with no price (Alpaca sends `0`, common on IEX) is `None` in price and size, and
    `one_sided` is true: such a side is not a price to fill or mark at.
    """

    bid_price: Decimal | None
    bid_size: int | None
    bid_exchange: str = ""
    ask_price: Decimal | None
    ask_size: int | None
    ask_exchange: str = ""
    conditions: tuple[str, ...] = ()
    tape: str = ""
    one_sided: bool = False


class Trade(_MarketEvent):
    """A trade print for an equity; `size` in shares. A print can later be corrected
    (:class:`TradeCorrection`) or cancelled (:class:`TradeCancel`) by its `trade_id`."""

    price: Decimal
    size: int
    exchange: str = ""
    trade_id: int | None = None
    conditions: tuple[str, ...] = ()
    tape: str = ""


class TradeCorrection(_MarketEvent):
    """Alpaca `c`: the print `original_trade_id` is replaced by `corrected_trade_id` with the
    corrected price, size and conditions (sizes in shares). Undo the original, apply the new."""

    exchange: str = ""
    original_trade_id: int | None = None
    original_price: Decimal
    original_size: int
    original_conditions: tuple[str, ...] = ()
    corrected_trade_id: int | None = None
    corrected_price: Decimal
    corrected_size: int
    corrected_conditions: tuple[str, ...] = ()
    tape: str = ""


class TradeCancel(_MarketEvent):
    """Alpaca `x`: the print `trade_id` is cancelled (`action` "C") or was an error ("E");
    either way it never happened. `price`/`size` (shares) repeat the busted print."""

    trade_id: int | None = None
    exchange: str = ""
    price: Decimal
    size: int
    action: str = ""
    tape: str = ""


class Luld(_MarketEvent):
    """Alpaca `l`: limit-up/limit-down price bands now in force."""

    limit_up_price: Decimal
    limit_down_price: Decimal
    indicator: str = ""
    tape: str = ""


class Imbalance(_MarketEvent):
    """Alpaca `i`: an auction order imbalance with its reference price."""

    price: Decimal
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
    """Top-of-book quote for an option contract (OCC symbol); sizes in contracts."""

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


MarketEvent = (
    Quote
    | Trade
    | TradeCorrection
    | TradeCancel
    | Bar
    | TradingStatus
    | Luld
    | Imbalance
    | OptionQuote
    | OptionTrade
)
