"""Enumerations shared by subjects, models and policy."""

from __future__ import annotations

from enum import StrEnum


class AssetClass(StrEnum):
    """Which upstream stream a message comes from."""

    STOCKS = "stocks"
    OPTIONS = "options"


class Channel(StrEnum):
    """Message channel; the subject token after the asset class."""

    QUOTES = "quotes"
    TRADES = "trades"
    BARS = "bars"
    DAILYBARS = "dailybars"
    STATUSES = "statuses"
    CORRECTIONS = "corrections"
    """Trade corrections (Alpaca `c`); they come with `trades` upstream."""
    CANCELS = "cancels"
    """Trade cancels and errors (Alpaca `x`); they come with `trades` upstream."""
    LULDS = "lulds"
    """Limit-up/limit-down price bands (Alpaca `l`), on request."""
    IMBALANCES = "imbalances"
    """Auction order imbalances (Alpaca `i`), on request."""


TRADE_COMPANIONS: tuple[Channel, ...] = (Channel.CORRECTIONS, Channel.CANCELS)
"""Channels Alpaca sends with every `trades` subscription (they cannot be asked for alone
upstream); a lease on `trades` carries them, and a lease on one of them holds `trades`."""

CHANNELS_BY_ASSET: dict[AssetClass, tuple[Channel, ...]] = {
    AssetClass.STOCKS: (
        Channel.QUOTES, Channel.TRADES, Channel.BARS, Channel.DAILYBARS, Channel.STATUSES,
        Channel.CORRECTIONS, Channel.CANCELS, Channel.LULDS, Channel.IMBALANCES,
    ),
    AssetClass.OPTIONS: (Channel.QUOTES, Channel.TRADES),
}  # fmt: skip


class Path(StrEnum):
    """Real-time, or the same messages after the configured delay."""

    RT = "rt"
    DELAYED = "delayed"


class BarKind(StrEnum):
    """Which Alpaca bar channel produced a bar (`b`, `u`, `d`) or a REST backfill."""

    MINUTE = "minute"
    UPDATED = "updated"
    DAILY = "daily"


class SettleSource(StrEnum):
    """Where a settle price came from."""

    AUCTION = "auction"
    """The primary listing market's official closing auction print (condition `M`)."""
    DAILY_BAR = "daily_bar"
    """The consolidated daily bar's close (last eligible trade); used when no auction printed."""
    INTRINSIC = "intrinsic"
    """An option that expired that day: intrinsic value from the underlying's settle."""
    CONTRACT_CLOSE = "contract_close"
    QUOTE_MID = "quote_mid"
    CARRIED_FORWARD = "carried_forward"


class SettleFeed(StrEnum):
    """Which tape a settle price was read from."""

    SIP = "sip"
    IEX = "iex"
    OPRA = "opra"
    INDICATIVE = "indicative"
