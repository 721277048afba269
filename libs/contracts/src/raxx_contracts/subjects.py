"""NATS subject names. Publishers call the builders; subscribers use the patterns.

Every symbol is encoded with :func:`raxx_contracts.symbols.encode_symbol`, so a subject built
here never contains a wildcard that a caller did not ask for.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import NamedTuple

from raxx_contracts.enums import CHANNELS_BY_ASSET, AssetClass, Channel, Path
from raxx_contracts.errors import ContractError
from raxx_contracts.symbols import decode_symbol, encode_symbol

MD_PREFIX = "md"
INTEREST = "md.ctl.interest"
"""Request/reply: a consumer declares interest in symbols (with a lease)."""
BILLING_TIER_CHANGED = "billing.tier.changed"
BROKER_HANDOFF_EVENTS = "broker.handoff.events"

SETTLES_STREAM = "SETTLES"
"""JetStream stream holding settles and batch markers; declared by eod-settler only."""
SETTLES_ANY = "md.settle.>"
SETTLE_STOCKS_ANY = "md.settle.stocks.>"
SETTLE_OPTIONS_ANY = "md.settle.options.>"
SETTLE_DONE_ANY = "md.settle.done.*"
SETTLES_STREAM_SUBJECTS = (SETTLE_STOCKS_ANY, SETTLE_OPTIONS_ANY, SETTLE_DONE_ANY)

BILLING_STREAM = "BILLING"
"""JetStream stream holding `billing.tier.changed`."""

HELD_OPTIONS_BUCKET = "MBT_HELD_OPTIONS"
"""KV bucket MBT maintains: key = encoded OCC symbol, value = HeldOptionContract."""

USER_INBOX_ROOT = "_INBOX_U"

USER_TIERS_BUCKET = "TG_USER_TIERS"
"""KV bucket tier-gate owns (writes) and the hub watches: key = :func:`user_tier_key`, value =
the `TierChanged` tier-gate applied last for that user. The hub refuses an HTTP token whose
tier ranks above the user's current tier (a downgrade supersedes it at once). Entries expire
after the longest credential lifetime (a token issued before a change is dead by then)."""


def market(path: Path, asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Subject of one market-data message, e.g. `md.rt.stocks.quotes.BRK_2EB`."""
    if channel not in CHANNELS_BY_ASSET[asset]:
        raise ContractError(f"channel {channel} does not exist for {asset}")
    return f"{MD_PREFIX}.{path}.{asset}.{channel}.{encode_symbol(symbol)}"


def rt(asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Real-time subject for `symbol`."""
    return market(Path.RT, asset, channel, symbol)


def delayed(asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Delayed-path subject for `symbol`."""
    return market(Path.DELAYED, asset, channel, symbol)


def market_pattern(
    path: Path | None = None,
    asset: AssetClass | None = None,
    channel: Channel | None = None,
    symbol: str | None = None,
) -> str:
    """Subscription pattern; each omitted part is a `*` wildcard token."""
    parts = [
        MD_PREFIX,
        str(path) if path else "*",
        str(asset) if asset else "*",
        str(channel) if channel else "*",
        encode_symbol(symbol) if symbol is not None else "*",
    ]
    return ".".join(parts)


def path_root(path: Path, asset: AssetClass | None = None) -> str:
    """`md.rt.>`, `md.delayed.stocks.>` and the like (for permissions and streams)."""
    return f"{MD_PREFIX}.{path}.{asset}.>" if asset else f"{MD_PREFIX}.{path}.>"


class MarketSubject(NamedTuple):
    """A parsed market-data subject."""

    path: Path
    asset: AssetClass
    channel: Channel
    symbol: str


def parse_market(subject: str) -> MarketSubject:
    """Parse a subject built by :func:`market`; raise ContractError for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != MD_PREFIX:
        raise ContractError(f"not a market-data subject: {subject!r}")
    try:
        path, asset, channel = Path(parts[1]), AssetClass(parts[2]), Channel(parts[3])
    except ValueError as exc:
        raise ContractError(f"not a market-data subject: {subject!r}") from exc
    if channel not in CHANNELS_BY_ASSET[asset]:
        raise ContractError(f"channel {channel} does not exist for {asset}")
    return MarketSubject(path, asset, channel, decode_symbol(parts[4]))


def to_delayed(rt_subject: str) -> str:
    """The delayed twin of a real-time subject (same tail)."""
    if not rt_subject.startswith(f"{MD_PREFIX}.{Path.RT}."):
        raise ContractError(f"not a real-time subject: {rt_subject!r}")
    return f"{MD_PREFIX}.{Path.DELAYED}.{rt_subject[len(MD_PREFIX) + len(Path.RT) + 2 :]}"


def settle(asset: AssetClass, date: dt.date, symbol: str) -> str:
    """`md.settle.<asset>.<YYYY-MM-DD>.<SYM>`."""
    return f"{MD_PREFIX}.settle.{asset}.{date.isoformat()}.{encode_symbol(symbol)}"


def settle_done(date: dt.date) -> str:
    """`md.settle.done.<YYYY-MM-DD>`: batch-complete marker."""
    return f"{MD_PREFIX}.settle.done.{date.isoformat()}"


def settle_msg_id(date: dt.date, symbol: str, revision: int) -> str:
    """JetStream `Nats-Msg-Id` for one settle revision: dedup key (date, symbol, revision)."""
    return f"settle:{date.isoformat()}:{encode_symbol(symbol)}:{revision}"


def user_token(user_id: str) -> str:
    """A stable subject token for a user id (any characters), unguessable from outside."""
    digest = hashlib.sha256(user_id.encode()).digest()[:15]
    return base64.b32encode(digest).decode().rstrip("=")


def user_tier_key(user_id: str) -> str:
    """Key of a user's entry in :data:`USER_TIERS_BUCKET` (a valid KV key for any user id)."""
    return user_token(user_id)


def user_inbox_prefix(user_id: str) -> str:
    """The inbox prefix a user's client must use; its credential may read only below it."""
    return f"{USER_INBOX_ROOT}.{user_token(user_id)}"
