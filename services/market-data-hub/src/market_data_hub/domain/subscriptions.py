"""Upstream subscription planning: union of leases -> incremental subscribe/unsubscribe."""

from __future__ import annotations

from dataclasses import dataclass, field

from raxx_contracts import Channel

Key = tuple[Channel, str]


@dataclass
class Subscriptions:
    """What the hub holds upstream per channel, and since when unwanted symbols linger."""

    held: dict[Channel, set[str]] = field(default_factory=dict)
    gone_since: dict[Key, int] = field(default_factory=dict)

    def holds(self, channel: Channel, symbol: str) -> bool:
        """Whether `symbol` is subscribed upstream on `channel`."""
        return symbol in self.held.get(channel, ())

    def symbols(self) -> set[str]:
        """Distinct symbols held on any channel."""
        return set().union(*self.held.values()) if self.held else set()

    def apply(self, plan: SubscriptionPlan) -> None:
        """Record that `plan` was carried out upstream."""
        for ch, syms in plan.subscribe.items():
            self.held.setdefault(ch, set()).update(syms)
        for ch, syms in plan.unsubscribe.items():
            self.held.get(ch, set()).difference_update(syms)
        self.held = {ch: s for ch, s in self.held.items() if s}
        self.gone_since = plan.gone_since


@dataclass(frozen=True)
class SubscriptionPlan:
    """Deltas to send upstream, and the new linger bookkeeping."""

    subscribe: dict[Channel, set[str]]
    unsubscribe: dict[Channel, set[str]]
    gone_since: dict[Key, int]

    @property
    def empty(self) -> bool:
        """Nothing to send."""
        return not self.subscribe and not self.unsubscribe


def plan_changes(
    current: Subscriptions,
    desired: dict[Channel, set[str]],
    now_ns: int,
    linger_ns: int,
    cap: int,
) -> SubscriptionPlan:
    """Subscribe what is newly wanted; unsubscribe what has been unwanted for `linger_ns`.

    Lingering symbols are evicted early (oldest first) if keeping them would exceed `cap`.
    """
    subscribe: dict[Channel, set[str]] = {}
    unsubscribe: dict[Channel, set[str]] = {}
    gone: dict[Key, int] = {}
    for ch, syms in desired.items():
        new = syms - current.held.get(ch, set())
        if new:
            subscribe[ch] = set(new)
    for ch, syms in current.held.items():
        for sym in syms - desired.get(ch, set()):
            since = current.gone_since.get((ch, sym), now_ns)
            if now_ns - since >= linger_ns:
                unsubscribe.setdefault(ch, set()).add(sym)
            else:
                gone[(ch, sym)] = since
    wanted_syms = set().union(*desired.values()) if desired else set()
    after = (current.symbols() | wanted_syms) - {
        s for s in current.symbols() if all(s in unsubscribe.get(c, ()) for c in _chans(current, s))
    }
    for (_ch, sym), _since in sorted(gone.items(), key=lambda kv: kv[1]):
        if len(after) <= cap:
            break
        if sym in wanted_syms:
            continue
        for c in _chans(current, sym):
            unsubscribe.setdefault(c, set()).add(sym)
            gone.pop((c, sym), None)
        after.discard(sym)
    return SubscriptionPlan(subscribe, unsubscribe, gone)


def _chans(current: Subscriptions, sym: str) -> list[Channel]:
    return [c for c, s in current.held.items() if sym in s]
