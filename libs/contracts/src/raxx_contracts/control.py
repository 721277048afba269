"""Control traffic: interest leases on `md.ctl.interest` and error replies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raxx_contracts._base import Symbol, WireModel
from raxx_contracts.enums import AssetClass, Channel
from raxx_contracts.timestamps import NanoDatetime

RejectReason = Literal[
    "symbol_limit",
    "invalid_symbol",
    "invalid_channel",
    "not_entitled",
    "user_symbol_quota",
    "user_consumer_quota",
    "tier_share",
    "upstream_refused",
]
"""Why a symbol was refused: `symbol_limit` the plan's cap of distinct symbols is full;
`user_symbol_quota` this user already holds its quota of symbols (the tier's
`max_symbols_per_user`, or its `user_cap_share` of the cap, whichever is smaller);
`user_consumer_quota` this user already has `max_consumers_per_user` consumer ids with leases;
`tier_share` the user's tier as a whole holds its `tier_cap_share` of the cap;
`invalid_symbol` / `invalid_channel` bad input; `not_entitled` reserved;
`upstream_refused` Alpaca itself refused the subscription (its error code, e.g. 405 symbol limit
exceeded or 400 invalid syntax, is in the message): the hub does not hold the symbol."""


class InterestRequest(WireModel):
    """A consumer declares interest in symbols; the lease lapses unless renewed in time."""

    schema_version: Literal[1] = 1
    consumer_id: str = Field(min_length=1, max_length=200)
    """A name within the requesting user's own space (the owner is the authenticated user the
    request subject names, never this id)."""
    asset_class: AssetClass = AssetClass.STOCKS
    channels: tuple[Channel, ...] = (Channel.QUOTES, Channel.TRADES)
    symbols: tuple[str, ...] = Field(min_length=1, max_length=1000)
    """Raw symbols; each is validated by the hub and rejected one by one if unusable."""
    lease_seconds: int = Field(default=60, ge=5, le=3600)
    release: bool = False
    """True drops the consumer's lease on these symbols at once instead of renewing it."""


class Rejection(WireModel):
    """Why one requested symbol was not subscribed."""

    symbol: str
    reason: RejectReason
    message: str


class UpstreamHeld(WireModel):
    """What Alpaca acknowledged on the hub's upstream connection for one asset class (KV
    `MDH_INTEREST`, key `subjects.upstream_held_key(asset)`; written by the leading hub).

    `refused` maps a symbol to `[alpaca_code, message, until_epoch_ns]` for refusals still in
    force. eod-settler reads `held` to learn which symbols have interest: only what the hub
    accepted under the users' quotas and Alpaca acknowledged, never what a user merely asked.
    """

    held: tuple[str, ...] = ()
    refused: dict[str, tuple[int, str, int]] = Field(default_factory=dict)


class InterestReply(WireModel):
    """The hub's answer: what is now leased, what was refused and why.

    `accepted` lists only symbols Alpaca has acknowledged (its `subscription` answer names
    them); `pending` those leased but not yet acknowledged when the reply was due (the upstream
    is reconnecting, say). A pending symbol that Alpaca then refuses comes back in `rejected`
    (`upstream_refused`) on the next renewal, and its lease is dropped."""

    schema_version: Literal[1] = 1
    accepted: tuple[Symbol, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    pending: tuple[Symbol, ...] = ()
    lease_expires_at: NanoDatetime | None = None
    subscribed: int = 0
    """Distinct symbols the hub holds upstream for this asset class after the request."""
    symbol_cap: int = 0


class ErrorReply(WireModel):
    """A typed error answer to a NATS request: a stable code and a message safe to show
    (never internal exception text; the detail is in the responder's log)."""

    schema_version: Literal[1] = 1
    error: str
    message: str
