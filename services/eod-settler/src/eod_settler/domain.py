"""Pure settle logic: sessions, price choice, stale carry-forward and revisions. No IO."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from raxx_contracts import AssetClass, NanoDatetime, SettleFeed, SettleSource, dumps


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day's regular session (aware datetimes); half days close at 13:00 ET."""

    date: dt.date
    open: dt.datetime
    close: dt.datetime

    def due_at(self, lag_seconds: float) -> dt.datetime:
        """When the settle of this session may be computed: the close plus the configured lag."""
        return self.close + dt.timedelta(seconds=lag_seconds)


@dataclass(frozen=True, slots=True)
class Target:
    """One symbol to settle for a date."""

    symbol: str
    asset_class: AssetClass


@dataclass(frozen=True, slots=True)
class Computed:
    """A settle price chosen for (date, symbol), before revision numbering."""

    symbol: str
    asset_class: AssetClass
    price: Decimal
    source: SettleSource
    stale: bool
    feed: SettleFeed | None = None


Primary = tuple[Decimal, SettleSource, SettleFeed | None]
"""A price read for the date, where it came from and from which tape."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The latest stored revision of (date, symbol)."""

    price: Decimal
    source: SettleSource
    stale: bool
    revision: int


def to_decimal(value: object) -> Decimal | None:
    """A positive Decimal from an upstream number or string, else None (never zero)."""
    if value is None:
        return None
    try:
        price = Decimal(str(value))  # str(float) is the shortest repr: no binary noise
    except (InvalidOperation, ValueError):
        return None
    if not price.is_finite() or price <= 0:
        return None
    return price


def quote_mid(bid: object, ask: object) -> Decimal | None:
    """Mid of a two-sided quote; None when a side is missing, non-positive or crossed."""
    b, a = to_decimal(bid), to_decimal(ask)
    if b is None or a is None or a < b:
        return None
    return to_decimal((b + a) / 2)


def choose(
    target: Target,
    primary: Primary | None,
    previous: Decimal | None,
) -> Computed | None:
    """The settle for a target: today's print, else the previous settle flagged stale, else None.

    None means "no print and no previous settle": the caller reports it and publishes nothing.
    A zero or negative price never becomes a settle.
    """
    if primary is not None and (
        primary[0] > 0 or (primary[0] == 0 and primary[1] == SettleSource.INTRINSIC)
    ):
        price, source, feed = primary
        return Computed(target.symbol, target.asset_class, price, source, stale=False, feed=feed)
    if previous is not None and previous > 0:
        return Computed(
            target.symbol, target.asset_class, previous, SettleSource.CARRIED_FORWARD, stale=True
        )
    return None


def stock_primary(
    auction: Decimal | None, daily_close: Decimal | None, feed: SettleFeed
) -> Primary | None:
    """Equities: the official closing auction print, else the daily bar's close."""
    if auction is not None:
        return auction, SettleSource.AUCTION, feed
    if daily_close is not None:
        return daily_close, SettleSource.DAILY_BAR, feed
    return None


def option_primary(
    contract_close: Decimal | None, mid: Decimal | None, feed: SettleFeed | None = None
) -> Primary | None:
    """Options: the contract's close for the date, else the last quote's mid."""
    if contract_close is not None:
        return contract_close, SettleSource.CONTRACT_CLOSE, feed
    if mid is not None:
        return mid, SettleSource.QUOTE_MID, feed
    return None


def intrinsic(call: bool, strike: Decimal, underlying: Decimal) -> Decimal:
    """Intrinsic value per share of an option at expiry (zero when out of the money)."""
    value = underlying - strike if call else strike - underlying
    return max(value, Decimal(0))


def expired_on(expiration: dt.date | None, date: dt.date) -> bool:
    """Whether a contract expiring on `expiration` expired at the close of session `date`."""
    return expiration is not None and expiration == date


def next_revision(stored: Stored | None, computed: Computed) -> int | None:
    """Revision to write for `computed`, or None when it equals what is stored (publish nothing)."""
    if stored is None:
        return 1
    if (
        stored.price == computed.price
        and stored.source == computed.source
        and stored.stale == computed.stale
    ):
        return None
    return stored.revision + 1


def done_msg_id(date: dt.date, latest: Mapping[str, int]) -> str:
    """Nats-Msg-Id of a batch marker: the date plus a digest of its content (symbol, revision).

    A re-run with no change computes the same id, so neither the outbox nor the stream takes it
    twice; any new revision or symbol changes the id and the marker is published again.
    """
    h = hashlib.sha256()
    for symbol in sorted(latest):
        h.update(f"{symbol}:{latest[symbol]};".encode())
    return f"settle-done:{date.isoformat()}:{len(latest)}:{h.hexdigest()[:24]}"


def chunks(items: Iterable[str], size: int) -> list[list[str]]:
    """Split `items` into lists of at most `size` (order kept)."""
    out: list[list[str]] = []
    cur: list[str] = []
    for item in items:
        cur.append(item)
        if len(cur) == size:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def symbol_batches(symbols: Iterable[str], max_count: int, max_query_bytes: int) -> list[list[str]]:
    """Split symbols into request batches bounded by count AND by encoded query length.

    Servers cap the request line (aiohttp, which alpaca-sim uses, at 8190 bytes; proxies in
    front of real APIs likewise), and requests encodes each `,` as `%2C`, so the URL length is
    what binds first for a multi-symbol request. A page holds at most 10,000 daily bars.
    """
    max_count = min(max_count, 10_000)
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for sym in symbols:
        cost = len(sym) + 3  # the symbol plus an encoded comma
        if cur and (len(cur) == max_count or size + cost > max_query_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(sym)
        size += cost
    if cur:
        out.append(cur)
    return out


def latest_due_session(
    sessions: Iterable[Session], now: dt.datetime, lag_seconds: float
) -> Session | None:
    """The most recent session whose settle is due at `now`."""
    due = [s for s in sessions if s.due_at(lag_seconds) <= now]
    return max(due, key=lambda s: s.date) if due else None


def next_due_at(
    sessions: Iterable[Session], now: dt.datetime, lag_seconds: float
) -> dt.datetime | None:
    """The next moment a settle falls due after `now`."""
    upcoming = [s.due_at(lag_seconds) for s in sessions if s.due_at(lag_seconds) > now]
    return min(upcoming) if upcoming else None


def reread_due_at(session: Session, local: dt.time, tz: dt.tzinfo) -> dt.datetime:
    """When the next-morning re-read of `session` is due: `local` on the following day."""
    return dt.datetime.combine(session.date + dt.timedelta(days=1), local, tz)


def settle_payload(
    c: Computed, date: dt.date, revision: int, close: NanoDatetime, computed_at: NanoDatetime
) -> bytes:
    """The `Settle` wire JSON, built from a dict (the codec's fast path).

    Byte-for-byte what `encode(Settle(...))` produces (a unit test holds it to that), at a
    fraction of the cost for 10,000 settles.
    """
    return dumps(
        {
            "schema_version": 1, "symbol": c.symbol, "timestamp": close,
            "date": date.isoformat(), "asset_class": str(c.asset_class), "price": c.price,
            "source": str(c.source), "feed": str(c.feed) if c.feed else None,
            "revision": revision, "stale": c.stale,
            "computed_at": computed_at,
        }
    )  # fmt: skip
