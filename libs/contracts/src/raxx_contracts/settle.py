"""End-of-day settles (stream `SETTLES`) and the option contracts MBT holds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from raxx_contracts._base import Symbol, WireModel
from raxx_contracts.enums import AssetClass, SettleFeed, SettleSource
from raxx_contracts.timestamps import NanoDatetime


class Settle(WireModel):
    """The official closing price MBT marks a position with, for one date and symbol."""

    schema_version: Literal[1] = 1
    symbol: Symbol
    timestamp: NanoDatetime
    """The session close the settle belongs to."""
    date: dt.date
    asset_class: AssetClass
    price: Decimal = Field(ge=0)
    """Positive, except an option that expired out of the money (`intrinsic`, zero)."""
    source: SettleSource
    """`auction` (official closing auction), `daily_bar`, `contract_close`, `quote_mid`,
    `intrinsic` (option expired that day) or `carried_forward` (with `stale`)."""
    feed: SettleFeed | None = None
    """The tape the price came from (`sip`, `iex`, `opra`, `indicative`); for `intrinsic` and
    `intrinsic`, the underlying's; None for `carried_forward` and in settles published before
    the field existed."""
    revision: int = Field(ge=1)
    """1 for the first settle of (date, symbol); a corrected price is revision n+1."""
    stale: bool = False
    """True when no print existed that day and the previous settle was carried forward."""
    computed_at: NanoDatetime

    @model_validator(mode="after")
    def _zero_only_intrinsic(self) -> Settle:
        if self.price == 0 and self.source != SettleSource.INTRINSIC:
            raise ValueError("a settle price is positive unless the source is intrinsic")
        return self


class SettleBatchDone(WireModel):
    """Published on `md.settle.done.<date>` once every settle of the date is on the stream."""

    schema_version: Literal[1] = 1
    timestamp: NanoDatetime
    date: dt.date
    count: int = Field(ge=0)
    """Settles in the date's complete set (every symbol, latest revision)."""
    stale: int = Field(default=0, ge=0)
    revised: int = Field(default=0, ge=0)
    """Settles published by this run as revision > 1."""
    run_id: str = ""


class HeldOptionContract(WireModel):
    """One option contract MBT holds; MBT maintains the set in KV bucket `MBT_HELD_OPTIONS`."""

    schema_version: Literal[1] = 1
    symbol: Symbol
    timestamp: NanoDatetime
    """When MBT last confirmed the holding."""
