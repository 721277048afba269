"""Raxx wire contracts: message models, subject builders, tier policy and the wire codec."""

from raxx_contracts import subjects
from raxx_contracts.codec import decode, dumps, encode
from raxx_contracts.control import ErrorReply, InterestReply, InterestRequest, Rejection
from raxx_contracts.enums import (
    CHANNELS_BY_ASSET,
    AssetClass,
    BarKind,
    Channel,
    Path,
    SettleFeed,
    SettleSource,
)
from raxx_contracts.errors import ContractError, DecodeError, InvalidSymbolError, UnknownTierError
from raxx_contracts.events import HandoffEvent, TierChanged
from raxx_contracts.market import (
    Bar,
    MarketEvent,
    OptionQuote,
    OptionTrade,
    Quote,
    Trade,
    TradingStatus,
)
from raxx_contracts.policy import (
    HttpRate,
    InterestQuota,
    TierPolicy,
    TierRule,
    default_policy,
    parse_policy,
)
from raxx_contracts.settle import HeldOptionContract, Settle, SettleBatchDone
from raxx_contracts.symbols import decode_symbol, encode_symbol
from raxx_contracts.timestamps import NanoDatetime, utc_now

__all__ = [
    "CHANNELS_BY_ASSET",
    "AssetClass",
    "Bar",
    "BarKind",
    "Channel",
    "ContractError",
    "DecodeError",
    "ErrorReply",
    "HandoffEvent",
    "HeldOptionContract",
    "HttpRate",
    "InterestQuota",
    "InterestReply",
    "InterestRequest",
    "InvalidSymbolError",
    "MarketEvent",
    "NanoDatetime",
    "OptionQuote",
    "OptionTrade",
    "Path",
    "Quote",
    "Rejection",
    "Settle",
    "SettleBatchDone",
    "SettleFeed",
    "SettleSource",
    "TierChanged",
    "TierPolicy",
    "TierRule",
    "Trade",
    "TradingStatus",
    "UnknownTierError",
    "decode",
    "decode_symbol",
    "default_policy",
    "dumps",
    "encode",
    "encode_symbol",
    "parse_policy",
    "subjects",
    "utc_now",
]
