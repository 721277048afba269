"""The interest lease table: who wants which symbols on which channels, until when.

One table per asset class. It is stored as one JSON document in NATS KV and updated with a
revision check, so whichever replica answers a request sees and enforces the same cap, and
the leader derives the upstream subscription set from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from raxx_contracts import CHANNELS_BY_ASSET, AssetClass, Channel, Rejection

from market_data_hub.domain.symbols import check_symbol

NS = 1_000_000_000


@dataclass(frozen=True)
class InterestOutcome:
    """The result of applying one interest request to the table."""

    accepted: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    expires_ns: int | None
    subscribed: int


@dataclass
class LeaseTable:
    """consumer id -> symbol -> (channels, expiry in epoch ns)."""

    asset: AssetClass
    leases: dict[str, dict[str, tuple[frozenset[str], int]]] = field(default_factory=dict)

    def prune(self, now_ns: int) -> bool:
        """Drop lapsed leases; return whether anything changed."""
        changed = False
        for consumer in list(self.leases):
            entries = self.leases[consumer]
            for sym in [s for s, (_, exp) in entries.items() if exp <= now_ns]:
                del entries[sym]
                changed = True
            if not entries:
                del self.leases[consumer]
        return changed

    def union(self, now_ns: int) -> dict[Channel, set[str]]:
        """Channel -> symbols wanted by at least one unexpired lease."""
        out: dict[Channel, set[str]] = {}
        for entries in self.leases.values():
            for sym, (channels, exp) in entries.items():
                if exp > now_ns:
                    for ch in channels:
                        out.setdefault(Channel(ch), set()).add(sym)
        return out

    def symbols(self, now_ns: int) -> set[str]:
        """Distinct symbols under an unexpired lease (what counts against the cap)."""
        return {
            sym
            for entries in self.leases.values()
            for sym, (_, exp) in entries.items()
            if exp > now_ns
        }

    def next_expiry(self) -> int | None:
        """Earliest expiry in the table, if any."""
        exps = [exp for e in self.leases.values() for _, exp in e.values()]
        return min(exps) if exps else None

    def apply(
        self,
        consumer: str,
        symbols: Iterable[str],
        channels: Iterable[Channel],
        lease_seconds: int,
        now_ns: int,
        cap: int,
        release: bool = False,
    ) -> InterestOutcome:
        """Renew, add or release `consumer`'s leases; reject what is invalid or over `cap`."""
        self.prune(now_ns)
        wanted = list(dict.fromkeys(symbols))
        chans = tuple(dict.fromkeys(channels))
        allowed = CHANNELS_BY_ASSET[self.asset]
        bad = [c for c in chans if c not in allowed]
        if bad:
            msg = f"channel(s) {', '.join(bad)} not offered for {self.asset}"
            rej = tuple(Rejection(symbol=s, reason="invalid_channel", message=msg) for s in wanted)
            return InterestOutcome((), rej, None, len(self.symbols(now_ns)))
        accepted: list[str] = []
        rejected: list[Rejection] = []
        mine = self.leases.setdefault(consumer, {})
        if release:
            for sym in wanted:
                mine.pop(sym, None)
                accepted.append(sym)
            if not mine:
                del self.leases[consumer]
            return InterestOutcome(tuple(accepted), (), None, len(self.symbols(now_ns)))
        expires = now_ns + lease_seconds * NS
        held = self.symbols(now_ns)
        for sym in wanted:
            check = check_symbol(self.asset, sym)
            if not check.ok:
                rejected.append(
                    Rejection(symbol=sym, reason="invalid_symbol", message=check.reason)
                )
                continue
            if sym not in held and len(held) >= cap:
                rejected.append(
                    Rejection(
                        symbol=sym,
                        reason="symbol_limit",
                        message=f"the hub already holds {len(held)} of {cap} {self.asset} symbols",
                    )
                )
                continue
            held.add(sym)
            old = mine.get(sym)
            merged = frozenset(chans) | (old[0] if old and old[1] > now_ns else frozenset())
            mine[sym] = (frozenset(str(c) for c in merged), expires)
            accepted.append(sym)
        if not mine:
            del self.leases[consumer]
        return InterestOutcome(
            tuple(accepted), tuple(rejected), expires if accepted else None, len(held)
        )

    def to_json(self) -> bytes:
        """Serialize for NATS KV."""
        return orjson.dumps(
            {
                "asset": str(self.asset),
                "leases": {
                    c: {s: [sorted(ch), exp] for s, (ch, exp) in e.items()}
                    for c, e in self.leases.items()
                },
            }
        )

    @classmethod
    def from_json(cls, asset: AssetClass, data: bytes | None) -> LeaseTable:
        """Deserialize (an empty table for None or empty data)."""
        if not data:
            return cls(asset)
        raw = orjson.loads(data)
        leases = {
            c: {s: (frozenset(v[0]), int(v[1])) for s, v in e.items()}
            for c, e in raw.get("leases", {}).items()
        }
        return cls(asset, leases)
