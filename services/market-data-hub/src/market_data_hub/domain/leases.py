"""Interest leases: who wants which symbols on which channels, until when, within what quota.

Two kinds of record per asset class, both bounded whatever users send:

- `OwnerLeases`: one per authenticated user (the owner named by the request subject, never a
  client-chosen id): consumer id -> symbol -> (channels, expiry). Its size is bounded by the
  tier's quota (consumers x symbols per user).
- `SlotTable`: one per asset class, the symbols held for anyone: per symbol and tier, how many
  owners hold it, counted in expiry buckets of `BUCKET_NS` (a bucket whose end has passed
  counts nothing, so a lapsed lease frees its slot without anyone sweeping), plus the channels
  wanted. Its size is bounded by the plan's symbol cap x tiers x buckets of the longest lease.

A request changes the owner's record and moves that owner's count between buckets; the moves
(`Delta`) are exact, so a release frees a slot at once, and they can be undone exactly when the
second write loses a race. Everything here is pure: the caller passes `now_ns`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from raxx_contracts import CHANNELS_BY_ASSET, AssetClass, Channel, InterestQuota, Rejection
from raxx_contracts.control import RejectReason

from market_data_hub.domain.symbols import check_symbol

NS = 1_000_000_000
BUCKET_NS = 60 * NS
"""Expiry granularity of slot counts: a lapsed (never released) lease holds its slot at most
this much longer than its expiry; a released one frees it at once."""


def bucket_of(exp_ns: int) -> int:
    """The bucket counting a lease that expires at `exp_ns` (its end is >= `exp_ns`)."""
    return -(-exp_ns // BUCKET_NS)


def bucket_live(bucket: int, now_ns: int) -> bool:
    """Whether a bucket can still hold an unexpired lease."""
    return bucket * BUCKET_NS > now_ns


@dataclass(frozen=True)
class Delta:
    """One owner's count moved in or out of a (symbol, tier, bucket)."""

    symbol: str
    tier: str
    bucket: int
    step: int

    def inverse(self) -> Delta:
        """The move that undoes this one."""
        return Delta(self.symbol, self.tier, self.bucket, -self.step)


@dataclass
class Slot:
    """One held symbol: tier -> bucket -> owners, channel -> latest expiry granted."""

    tiers: dict[str, dict[int, int]] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)

    def live(self, now_ns: int, tier: str | None = None) -> bool:
        """Whether some owner (of `tier`, or of any tier) still holds it: a live count, and a
        channel whose latest grant has not lapsed (so a lapsed lease frees the slot at its
        expiry, not at its bucket's end)."""
        if not any(exp > now_ns for exp in self.channels.values()):
            return False
        tiers = [tier] if tier is not None else list(self.tiers)
        return any(
            n > 0 and bucket_live(b, now_ns)
            for t in tiers
            for b, n in self.tiers.get(t, {}).items()
        )


@dataclass
class SlotTable:
    """Per asset class: the symbols held for anyone (bounded by the cap, see module doc)."""

    asset: AssetClass
    symbols: dict[str, Slot] = field(default_factory=dict)

    def prune(self, now_ns: int) -> None:
        """Drop buckets that can no longer count a lease, and symbols nobody holds."""
        for sym in list(self.symbols):
            slot = self.symbols[sym]
            for tier in list(slot.tiers):
                live = {
                    b: n for b, n in slot.tiers[tier].items() if n > 0 and bucket_live(b, now_ns)
                }
                if live:
                    slot.tiers[tier] = live
                else:
                    del slot.tiers[tier]
            slot.channels = {c: e for c, e in slot.channels.items() if e > now_ns}
            if not slot.tiers or not slot.channels:
                del self.symbols[sym]

    def held(self, now_ns: int) -> set[str]:
        """Distinct symbols some owner holds (what counts against the cap)."""
        return {s for s, slot in self.symbols.items() if slot.live(now_ns)}

    def tier_symbols(self, tier: str, now_ns: int) -> set[str]:
        """Distinct symbols owners of `tier` hold (what counts against the tier's share)."""
        return {s for s, slot in self.symbols.items() if slot.live(now_ns, tier)}

    def union(self, now_ns: int) -> dict[Channel, set[str]]:
        """Channel -> symbols to hold upstream."""
        out: dict[Channel, set[str]] = {}
        for sym, slot in self.symbols.items():
            if slot.live(now_ns):
                for ch, exp in slot.channels.items():
                    if exp > now_ns:
                        out.setdefault(Channel(ch), set()).add(sym)
        return out

    def apply(self, deltas: Iterable[Delta], now_ns: int) -> None:
        """Move counts; a move into a bucket that can no longer count anything is dropped."""
        for d in deltas:
            if not bucket_live(d.bucket, now_ns):
                continue
            slot = self.symbols.setdefault(d.symbol, Slot())
            buckets = slot.tiers.setdefault(d.tier, {})
            n = buckets.get(d.bucket, 0) + d.step
            if n > 0:
                buckets[d.bucket] = n
            else:
                buckets.pop(d.bucket, None)
        self.prune(now_ns)

    def to_json(self) -> bytes:
        """Serialize for NATS KV."""
        return orjson.dumps(
            {
                "asset": str(self.asset),
                "symbols": {
                    s: {
                        "tiers": {
                            t: {str(b): n for b, n in bs.items()} for t, bs in slot.tiers.items()
                        },
                        "channels": slot.channels,
                    }
                    for s, slot in self.symbols.items()
                },
            }
        )

    @classmethod
    def from_json(cls, asset: AssetClass, data: bytes | None) -> SlotTable:
        """Deserialize (an empty table for None or empty data)."""
        if not data:
            return cls(asset)
        raw = orjson.loads(data)
        symbols = {
            s: Slot(
                tiers={t: {int(b): int(n) for b, n in bs.items()} for t, bs in v["tiers"].items()},
                channels={c: int(e) for c, e in v["channels"].items()},
            )
            for s, v in raw.get("symbols", {}).items()
        }
        return cls(asset, symbols)


Entries = dict[str, tuple[frozenset[str], int]]


@dataclass
class OwnerLeases:
    """One user's leases in one asset class: consumer id -> symbol -> (channels, expiry)."""

    tier: str | None = None
    consumers: dict[str, Entries] = field(default_factory=dict)

    def holdings(self, now_ns: int | None = None) -> dict[str, int]:
        """Symbol -> latest expiry over this owner's consumers (unexpired only, given now)."""
        out: dict[str, int] = {}
        for entries in self.consumers.values():
            for sym, (_, exp) in entries.items():
                if now_ns is None or exp > now_ns:
                    out[sym] = max(exp, out.get(sym, 0))
        return out

    def prune(self, now_ns: int) -> None:
        """Drop lapsed leases and consumers left without any."""
        for cid in list(self.consumers):
            live = {s: v for s, v in self.consumers[cid].items() if v[1] > now_ns}
            if live:
                self.consumers[cid] = live
            else:
                del self.consumers[cid]

    def to_json(self) -> bytes:
        """Serialize for NATS KV."""
        return orjson.dumps(
            {
                "tier": self.tier,
                "consumers": {
                    c: {s: [sorted(ch), exp] for s, (ch, exp) in e.items()}
                    for c, e in self.consumers.items()
                },
            }
        )

    @classmethod
    def from_json(cls, data: bytes | None) -> OwnerLeases:
        """Deserialize (an empty record for None or empty data)."""
        if not data:
            return cls()
        raw = orjson.loads(data)
        consumers = {
            c: {s: (frozenset(v[0]), int(v[1])) for s, v in e.items()}
            for c, e in raw.get("consumers", {}).items()
        }
        return cls(raw.get("tier"), consumers)


@dataclass(frozen=True)
class Limits:
    """What applies to one request: the plan's cap and the tier's quota."""

    cap: int
    quota: InterestQuota
    max_record_bytes: int
    """No record is ever written larger than this (kept well under the server's max payload)."""


@dataclass(frozen=True)
class InterestOutcome:
    """The result of applying one request: the reply's fields and what to write."""

    accepted: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    expires_ns: int | None
    subscribed: int
    owner: OwnerLeases
    slots: SlotTable
    deltas: tuple[Delta, ...]
    changed: bool


def _deltas(
    before: dict[str, int], old_tier: str | None, after: dict[str, int], new_tier: str
) -> list[Delta]:
    out: list[Delta] = []
    for sym in sorted(set(before) | set(after)):
        b, a = before.get(sym), after.get(sym)
        if (
            b is not None
            and a is not None
            and old_tier == new_tier
            and bucket_of(b) == bucket_of(a)
        ):
            continue
        if b is not None and old_tier is not None:
            out.append(Delta(sym, old_tier, bucket_of(b), -1))
        if a is not None:
            out.append(Delta(sym, new_tier, bucket_of(a), +1))
    return out


def apply_request(
    owner_in: OwnerLeases,
    slots_in: SlotTable,
    *,
    tier: str,
    consumer: str,
    symbols: Iterable[str],
    channels: Iterable[Channel],
    lease_seconds: int,
    release: bool,
    now_ns: int,
    limits: Limits,
    refused: Mapping[str, str] | None = None,
) -> InterestOutcome:
    """Renew, add or release `consumer`'s leases of one owner; reject what is over a limit.

    Checks per new symbol, in order: valid symbol; the consumer fits the owner's consumer quota;
    the symbol fits the owner's symbol quota (renewing one the owner holds always fits); the
    tier's share of the cap; the cap itself. A symbol in `refused` (Alpaca refused to
    subscribe it; value = why) is rejected as `upstream_refused` and this consumer's lease on
    it is dropped. The inputs are not modified.
    """
    refused = refused or {}
    asset = slots_in.asset
    owner = copy.deepcopy(owner_in)
    slots = copy.deepcopy(slots_in)
    slots.prune(now_ns)
    wanted = list(dict.fromkeys(symbols))
    chans = tuple(dict.fromkeys(channels))

    def unchanged(rejected: list[Rejection]) -> InterestOutcome:
        return InterestOutcome(
            (), tuple(rejected), None, len(slots.held(now_ns)), owner_in, slots_in, (), False
        )

    bad = [c for c in chans if c not in CHANNELS_BY_ASSET[asset]]
    if not release and (bad or not chans):
        msg = f"channel(s) {', '.join(bad)} not offered for {asset}" if bad else "no channel"
        return unchanged(
            [Rejection(symbol=s, reason="invalid_channel", message=msg) for s in wanted]
        )

    before = owner.holdings()
    old_tier = owner.tier
    if owner.tier != tier:  # a tier change: the owner's leases start over under the new tier
        owner = OwnerLeases(tier)
    owner.prune(now_ns)
    accepted: list[str] = []
    rejected: list[Rejection] = []
    expires = now_ns + lease_seconds * NS
    if release:
        mine = owner.consumers.get(consumer, {})
        for sym in wanted:
            mine.pop(sym, None)
            accepted.append(sym)
        if consumer in owner.consumers and not mine:
            del owner.consumers[consumer]
    else:
        quota = limits.quota
        user_limit = quota.user_limit(limits.cap)
        tier_limit = quota.tier_limit(limits.cap)
        held = slots.held(now_ns)
        tier_held = slots.tier_symbols(tier, now_ns)
        user_held = set(owner.holdings(now_ns))
        new_consumer = consumer not in owner.consumers
        mine = owner.consumers.setdefault(consumer, {})
        for sym in wanted:
            check = check_symbol(asset, sym)
            reason: RejectReason | None = None
            msg = ""
            if not check.ok:
                reason, msg = "invalid_symbol", check.reason
            elif sym in refused:
                reason, msg = "upstream_refused", refused[sym]
                mine.pop(sym, None)
            elif new_consumer and len(owner.consumers) > quota.max_consumers_per_user:
                reason = "user_consumer_quota"
                msg = f"at most {quota.max_consumers_per_user} consumer ids per user on tier {tier}"
            elif sym not in user_held and len(user_held) >= user_limit:
                reason = "user_symbol_quota"
                msg = f"at most {user_limit} {asset} symbols per user on tier {tier}"
            elif sym not in held and len(held) >= limits.cap:
                reason = "symbol_limit"
                msg = f"the hub already holds {len(held)} of {limits.cap} {asset} symbols"
            elif sym not in tier_held and len(tier_held) >= tier_limit:
                reason = "tier_share"
                msg = (
                    f"tier {tier} already holds its share ({tier_limit} of {limits.cap}) "
                    f"of {asset} symbols"
                )
            if reason is not None:
                rejected.append(Rejection(symbol=sym, reason=reason, message=msg))
                continue
            held.add(sym)
            tier_held.add(sym)
            user_held.add(sym)
            old = mine.get(sym)
            merged = frozenset(str(c) for c in chans) | (
                old[0] if old and old[1] > now_ns else frozenset()
            )
            mine[sym] = (merged, expires)
            accepted.append(sym)
            slot = slots.symbols.setdefault(sym, Slot())
            for ch in merged:
                slot.channels[ch] = max(slot.channels.get(ch, 0), expires)
        if not mine:
            del owner.consumers[consumer]
    after = owner.holdings(now_ns)
    deltas = _deltas(before, old_tier, after, tier)
    slots.apply(deltas, now_ns)
    too_big = (
        len(owner.to_json()) > limits.max_record_bytes
        or len(slots.to_json()) > limits.max_record_bytes
    )
    if too_big and not release:
        why = f"the lease records would exceed {limits.max_record_bytes} bytes"
        return unchanged([Rejection(symbol=s, reason="symbol_limit", message=why) for s in wanted])
    return InterestOutcome(
        tuple(accepted),
        tuple(rejected),
        expires if accepted and not release else None,
        len(slots.held(now_ns)),
        owner,
        slots,
        tuple(deltas),
        True,
    )
