"""Upstream subscription planning: union of leases -> incremental subscribe/unsubscribe.

Two sets per channel: `sent` is what the hub asked Alpaca for (the base of the next plan),
`held` is what Alpaca acknowledged in its last `subscription` message (the full set it serves).
Only `held` decides what is published and what is reported to consumers as accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raxx_contracts import Channel

Key = tuple[Channel, str]


ACK_KEYS: dict[str, Channel] = {
    "quotes": Channel.QUOTES,
    "trades": Channel.TRADES,
    "bars": Channel.BARS,
    "dailyBars": Channel.DAILYBARS,
    "statuses": Channel.STATUSES,
    "lulds": Channel.LULDS,
    "imbalances": Channel.IMBALANCES,
}
"""Alpaca `subscription` message key -> channel (`updatedBars`, `corrections` and
`cancelErrors` follow `bars` and `trades` and are not tracked on their own)."""


@dataclass
class Subscriptions:
    """What the hub asked for and what Alpaca acknowledged, per channel."""

    held: dict[Channel, set[str]] = field(default_factory=dict)
    """Acknowledged by Alpaca (its last `subscription` message)."""
    sent: dict[Channel, set[str]] = field(default_factory=dict)
    """Asked for (subscribe sent, not unsubscribed since)."""
    gone_since: dict[Key, int] = field(default_factory=dict)

    def holds(self, channel: Channel, symbol: str) -> bool:
        """Whether Alpaca acknowledged `symbol` on `channel`."""
        return symbol in self.held.get(channel, ())

    def symbols(self) -> set[str]:
        """Distinct symbols asked for on any channel (what the plan counts against the cap)."""
        return set().union(*self.sent.values()) if self.sent else set()

    def held_symbols(self) -> set[str]:
        """Distinct symbols Alpaca acknowledged on any channel."""
        return set().union(*self.held.values()) if self.held else set()

    def clear(self) -> None:
        """A new session holds nothing until Alpaca says so."""
        self.held.clear()
        self.sent.clear()
        self.gone_since.clear()

    def acknowledge(self, ack: dict[str, list[str]]) -> None:
        """Take Alpaca's `subscription` message (the full current set) as the held set."""
        held: dict[Channel, set[str]] = {}
        for key, ch in ACK_KEYS.items():
            syms = ack.get(key)
            if syms:
                held[ch] = set(syms)
        self.held = held

    def refuse(self, channel: Channel, symbols: set[str]) -> None:
        """Alpaca refused a subscribe of `symbols`: they are not asked for any more."""
        mine = self.sent.get(channel)
        if mine is not None:
            mine.difference_update(symbols)
            if not mine:
                del self.sent[channel]

    def apply(self, plan: SubscriptionPlan) -> None:
        """Record that `plan` was sent upstream."""
        for ch, syms in plan.subscribe.items():
            self.sent.setdefault(ch, set()).update(syms)
        for ch, syms in plan.unsubscribe.items():
            self.sent.get(ch, set()).difference_update(syms)
        self.sent = {ch: s for ch, s in self.sent.items() if s}
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
        new = syms - current.sent.get(ch, set())
        if new:
            subscribe[ch] = set(new)
    for ch, syms in current.sent.items():
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
    return [c for c, s in current.sent.items() if sym in s]
