"""Corporate actions (stream `CORPACTIONS`): what MBT applies to positions before the open."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import Field

from raxx_contracts._base import Symbol, WireModel
from raxx_contracts.timestamps import NanoDatetime


class CorporateActionType(StrEnum):
    """Alpaca's `corporate_action_type` values (`/v1/corporate-actions` `types`)."""

    FORWARD_SPLIT = "forward_split"
    REVERSE_SPLIT = "reverse_split"
    UNIT_SPLIT = "unit_split"
    CASH_DIVIDEND = "cash_dividend"
    STOCK_DIVIDEND = "stock_dividend"
    SPIN_OFF = "spin_off"
    CASH_MERGER = "cash_merger"
    STOCK_MERGER = "stock_merger"
    STOCK_AND_CASH_MERGER = "stock_and_cash_merger"
    REDEMPTION = "redemption"
    NAME_CHANGE = "name_change"
    WORTHLESS_REMOVAL = "worthless_removal"
    RIGHTS_DISTRIBUTION = "rights_distribution"


class CorporateAction(WireModel):
    """One corporate action effective on `date` for `symbol`, on `md.corpactions.<date>.<SYM>`.

    `date` is the action's ex-date (splits, dividends, spin-offs) or effective date (mergers,
    name changes), i.e. the session before whose open MBT must apply it. A position of N shares
    becomes `N * new_rate / old_rate` shares on a split (4:1 forward: new 4, old 1); a cash
    dividend pays `cash_rate` per share to holders of record; a symbol change moves the position
    from `old_symbol` to `new_symbol`. Rates and cash amounts are exact decimals as Alpaca sent
    them. A changed action (Alpaca revised it) is published again as `revision` n+1 with the
    same `action_id`; the latest revision is the action.
    """

    schema_version: Literal[1] = 1
    symbol: Symbol
    """The symbol whose holders are affected (for a merger, the acquiree; for a spin-off, the
    source; for a name change, the old symbol)."""
    timestamp: NanoDatetime
    """When the settler computed this revision."""
    date: dt.date
    action_id: str
    """Alpaca's id of the action (stable across its revisions)."""
    type: CorporateActionType
    revision: int = Field(ge=1)
    new_rate: Decimal | None = None
    """Shares after (splits, stock mergers, spin-off: new shares per `old_rate` source shares)."""
    old_rate: Decimal | None = None
    """Shares before (splits, stock mergers, spin-off: source shares)."""
    cash_rate: Decimal | None = None
    """Cash per share (dividends, cash mergers, redemptions), in USD."""
    stock_rate: Decimal | None = None
    """New shares per held share (stock dividends)."""
    ex_date: dt.date | None = None
    record_date: dt.date | None = None
    payable_date: dt.date | None = None
    effective_date: dt.date | None = None
    process_date: dt.date | None = None
    old_symbol: str | None = None
    """Symbol changes, mergers, spin-offs: the symbol before (or the source)."""
    new_symbol: str | None = None
    """Symbol changes, mergers, spin-offs: the symbol after (or the new/acquirer symbol)."""
    special: bool = False
    """A special (non-recurring) cash dividend."""
    foreign: bool = False
    """A dividend paid by a foreign issuer (withholding may apply)."""
    computed_at: NanoDatetime
