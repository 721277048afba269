"""The stream engine: who is subscribed to what, and the ticker that prints the random walk."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from alpaca_sim.live import MINUTE_NS, SymbolState
from alpaca_sim.options import chain
from alpaca_sim.protocol import ts

if TYPE_CHECKING:
    from alpaca_sim.state import SimState
    from alpaca_sim.streams import Connection

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]


@dataclass
class Target:
    """A symbol that someone listens to, with its listeners per channel."""

    group: str
    symbol: str
    state: SymbolState
    conns: dict[str, list[Connection]] = field(default_factory=lambda: defaultdict(list))
    trade_conns: list[Connection] = field(default_factory=list)
    quote_conns: list[Connection] = field(default_factory=list)
    wants_bars: bool = False
    options: bool = False

    def finish(self) -> None:
        """Cache the per-tick lookups."""
        self.trade_conns = self.conns.get("trades", [])
        self.quote_conns = self.conns.get("quotes", [])
        self.wants_bars = any(self.conns.get(ch) for ch in ("bars", "updatedBars", "dailyBars"))
        self.options = self.group == "options"


class Engine:
    """Subscriptions of every connection and the message generator."""

    def __init__(self, sim: SimState) -> None:
        self.sim = sim
        self.rate = sim.settings.rate
        self.connections: list[Connection] = []
        self.targets: list[Target] = []
        self._by_symbol: dict[tuple[str, str], Target] = {}
        self._dirty = True
        self.silent_until = 0.0
        self._rng = np.random.default_rng(sim.settings.seed)
        self._option_universe: list[str] | None = None
        self._minute = 0
        self._half = False
        self.running = False
        self.last_event_ns = 0
        self._prices: tuple[FloatArray, FloatArray, FloatArray] | None = None

    # ---- registry --------------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """A new websocket session."""
        self.connections.append(conn)
        self.sim.metrics.ws_connections.set(len(self.connections))

    def remove(self, conn: Connection) -> None:
        """A session ended."""
        if conn in self.connections:
            self.connections.remove(conn)
        self._dirty = True
        self.sim.metrics.ws_connections.set(len(self.connections))

    def authenticate(self, conn: Connection, key: str, secret: str) -> None:
        """Check credentials, entitlement and the per-endpoint connection limit."""
        identity = self.sim.identity_for_stream(key, secret)
        if identity is None:
            conn.fail(402)
            return
        if conn.endpoint.feed not in self.sim.settings.feeds:
            conn.fail(409)
            return
        same = [
            c
            for c in self.connections
            if c is not conn
            and c.authenticated
            and not c.closing
            and c.identity == identity
            and c.endpoint.path == conn.endpoint.path
        ]
        if len(same) >= self.sim.settings.connection_limit:
            conn.fail(406)
            return
        conn.identity, conn.key, conn.authenticated = identity, key, True
        conn.send_control({"T": "success", "msg": "authenticated"})

    def change_subscription(self, conn: Connection, action: str, msg: dict[str, Any]) -> None:
        """Apply a subscribe/unsubscribe; answer with the full set or an error."""
        ep = conn.endpoint
        new = {ch: set(syms) for ch, syms in conn.subs.items()}
        for ch, syms in msg.items():
            if ch == "action" or ch in ("corrections", "cancelErrors"):
                continue
            if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
                conn.fail(400)
                return
            if ch not in ep.channels:
                if syms:
                    conn.fail(410 if ep.options or ch in ("orderbooks", "news") else 400)
                    return
                continue
            if not all(ep.valid_symbol(s) for s in syms):
                conn.fail(400)
                return
            if action == "subscribe" and self.sim.faults.refuse_symbols.intersection(syms):
                conn.fail(400)
                return
            if action == "subscribe":
                if ep.options and ch == "quotes" and "*" in syms:
                    conn.fail(413)
                    return
                if "*" in syms and not self.sim.settings.allow_star:
                    conn.fail(409)
                    return
                new[ch] |= set(syms)
            else:
                new[ch] -= set(syms)
        if ep.options:  # Alpaca caps option *quote* subscriptions (200 Basic, 1000 ATP)
            cap = self.sim.settings.option_quote_cap
            distinct = new.get("quotes", set()) - {"*"}
        else:
            cap = self.sim.settings.symbol_cap
            if self.sim.faults.symbol_cap is not None:
                cap = self.sim.faults.symbol_cap
            distinct = set().union(*new.values()) - {"*"}
        if cap and len(distinct) > cap:
            conn.fail(405)
            return
        conn.subs = new
        self._dirty = True
        conn.send_control(conn.subscription_msg())

    # ---- targets ---------------------------------------------------------------------------

    def _universe(self, group: str) -> list[str]:
        if group == "test":
            return ["FAKEPACA"]
        if group == "stocks":
            return list(self.sim.settings.universe)
        if self._option_universe is None:
            today = datetime.now(UTC).date()
            picked: list[str] = []
            for root in self.sim.settings.universe[:2]:
                contracts = chain(self.sim.market, root, today)
                first_exp = min(c.expiration for c in contracts)
                near = [c for c in contracts if c.expiration == first_exp]
                near.sort(key=lambda c: abs(c.strike - self.sim.live.state(root).price))
                picked += [c.symbol for c in near[:16]]
            self._option_universe = sorted(picked)
        return self._option_universe

    def _rebuild(self) -> None:
        by_symbol: dict[tuple[str, str], Target] = {}
        for conn in self.connections:
            if not conn.authenticated or conn.closing:
                continue
            group = conn.endpoint.group
            for ch, syms in conn.subs.items():
                expanded: set[str] = set()
                for s in syms:
                    expanded |= set(self._universe(group)) if s == "*" else {s}
                if group == "test":
                    expanded &= {"FAKEPACA"}  # the test stream only prints FAKEPACA
                for s in expanded:
                    tgt = by_symbol.get((group, s))
                    if tgt is None:
                        tgt = by_symbol[(group, s)] = Target(group, s, self.sim.live.state(s))
                    if conn not in tgt.conns[ch]:
                        tgt.conns[ch].append(conn)
        self._by_symbol = by_symbol
        self.targets = sorted(by_symbol.values(), key=lambda t: (t.group, t.symbol))
        for tgt in self.targets:
            tgt.finish()
        self._prices = None
        self._dirty = False

    def price_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(price, anchor, half spread) per target, as numpy arrays the ticker updates in place."""
        if self._prices is None:
            states = [t.state for t in self.targets]
            self._prices = (
                np.array([st.price for st in states], dtype=np.float64),
                np.array([st.anchor for st in states], dtype=np.float64),
                np.array([max(0.01, round(st.spread / 2, 2)) for st in states], dtype=np.float64),
            )
        return self._prices

    def write_back(self, touched: list[int], t_ns: int) -> None:
        """Copy the tick's final prices into the live states (read by REST latest endpoints)."""
        if self._prices is None:
            return
        px, _, half = self._prices
        for j in touched:
            st = self.targets[j].state
            p, h = float(px[j]), float(half[j])
            st.price, st.bid, st.ask = p, round(max(p - h, 0.0), 2), round(p + h, 2)
            st.last_trade_ns = st.last_quote_ns = t_ns

    def invalidate_prices(self) -> None:
        """Someone changed a live state directly (`/sim/publish`): reload before the next tick."""
        self._prices = None

    def listeners(self, group: str | None, symbol: str, channel: str) -> list[Connection]:
        """Connections that would receive `channel` data for `symbol`."""
        if self._dirty:
            self._rebuild()
        out: list[Connection] = []
        for (g, s), tgt in self._by_symbol.items():
            if s == symbol and (group is None or g == group):
                out += [c for c in tgt.conns.get(channel, []) if c not in out]
        return out

    # ---- the ticker ------------------------------------------------------------------------

    async def run(self) -> None:
        """Print `rate` messages per second over every subscribed symbol until cancelled."""
        loop = asyncio.get_running_loop()
        tick = self.sim.settings.tick_ms / 1000.0
        last = loop.time()
        carry = 0.0
        self.running = True
        try:
            while True:
                await asyncio.sleep(tick)
                now = loop.time()
                dt, last = now - last, now
                if self._dirty:
                    self._rebuild()
                if time.time() < self.silent_until or not self.targets:
                    carry = 0.0
                    continue
                # Keep ticks small: when the host cannot keep up, the rate drops instead of
                # frames and latency growing without bound. Catch up over at most 100 ms
                # (not 2 ticks): on a shared 2-core box the ticker is often preempted for
                # 10-30 ms, and dropping that backlog made the configured rate unreachable
                # (measured: 72k/s delivered at 80k/s with the simulator at 30% of a core).
                most = self.rate * max(tick * 2, 0.1) + 1
                carry = min(carry + self.rate * dt, most)
                n = int(carry)
                carry -= n
                now_ns = time.time_ns()
                if n > 0:
                    self._emit(n, now_ns, int(dt * 1e9))
                self._marks(now_ns)
        finally:
            self.running = False

    def _emit(self, n: int, now_ns: int, span_ns: int) -> None:
        from alpaca_sim.ticks import emit_ticks

        emit_ticks(self, self._rng, n, now_ns, span_ns)

    def _marks(self, now_ns: int) -> None:
        from alpaca_sim.ticks import half_minute_mark, minute_mark

        minute = now_ns // MINUTE_NS
        if minute != self._minute:
            if self._minute:
                minute_mark(self, self._rng, minute * MINUTE_NS)
            self._minute, self._half = minute, False
        elif not self._half and now_ns % MINUTE_NS >= MINUTE_NS // 2:
            self._half = True
            half_minute_mark(self, self._rng, minute * MINUTE_NS)

    # ---- fault actions ---------------------------------------------------------------------

    def drop_all(self) -> int:
        """Cut every connection as a network failure would."""
        conns = list(self.connections)
        for conn in conns:
            conn.abort()
        return len(conns)

    def send_error(self, code: int, endpoint: str | None = None) -> int:
        """Send `code` to every session (or one endpoint's), closing where Alpaca would."""
        conns = [c for c in self.connections if endpoint in (None, c.endpoint.path)]
        for conn in conns:
            if code == 407:
                conn.slow_client()
            else:
                conn.fail(code)
        return len(conns)

    def malformed(self, count: int) -> int:
        """Send `count` frames that decode neither as msgpack nor as JSON."""
        for conn in self.connections:
            for _ in range(count):
                conn.send_raw(b"\xc1\xc1 not msgpack" if conn.msgpack else '[{"T":"q",')
        return len(self.connections)

    def ts(self, t_ns: int) -> Any:
        """Event time in wire form."""
        return ts(t_ns)
