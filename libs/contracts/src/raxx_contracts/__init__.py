"""Raxx wire contracts: message models, subject builders, tier policy and the wire codec."""

from raxx_contracts import subjects
from raxx_contracts.codec import decode, dumps, encode
from raxx_contracts.control import (
    ErrorReply,
    InterestReply,
    InterestRequest,
    Rejection,
    UpstreamHeld,
)
from raxx_contracts.corpactions import CorporateAction, CorporateActionType
from raxx_contracts.enums import (
    CHANNELS_BY_ASSET,
    TRADE_COMPANIONS,
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
    Imbalance,
    Luld,
    MarketEvent,
    OptionQuote,
    OptionTrade,
    Quote,
    Trade,
    TradeCancel,
    TradeCorrection,
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
    "TRADE_COMPANIONS",
    "AssetClass",
    "Bar",
    "BarKind",
    "Channel",
    "ContractError",
    "CorporateAction",
    "CorporateActionType",
    "DecodeError",
    "ErrorReply",
    "HandoffEvent",
    "HeldOptionContract",
    "HttpRate",
    "Imbalance",
    "InterestQuota",
    "InterestReply",
    "InterestRequest",
    "InvalidSymbolError",
    "Luld",
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
    "TradeCancel",
    "TradeCorrection",
    "TradingStatus",
    "UnknownTierError",
    "UpstreamHeld",
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
