"""Expired option contracts: what `GET /v2/options/contracts?status=inactive` lists.

A contract expiring on day E was last listed in the chain as of E; the inactive set is every
such contract whose expiration lies before today, within the requested expiration window
(default: the last 30 days), with its close on its last session.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from alpaca_sim.options import Contract, black_scholes, chain, implied_vol

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

DEFAULT_LOOKBACK = timedelta(days=30)


def expired_chain(
    sim: SimState, underlying: str, today: date, gte: str | None, lte: str | None
) -> list[Contract]:
    """Contracts of `underlying` that expired before `today`, expiration in [gte, lte]."""
    first = date.fromisoformat(gte) if gte else today - DEFAULT_LOOKBACK
    last = min(date.fromisoformat(lte), today - timedelta(days=1)) if lte else today
    last = min(last, today - timedelta(days=1))
    out: list[Contract] = []
    for day in sim.calendar.days_between(first, last):
        out.extend(c for c in chain(sim.market, underlying, day) if c.expiration == day)
    return sorted(out, key=lambda c: c.symbol)


def expired_json(sim: SimState, c: Contract, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (the active form) as an inactive contract closed on its expiration day."""
    spot = sim.market.late_closes.apply(
        c.root, c.expiration, sim.market.daily_bar(c.root, c.expiration)
    )[3]
    at = sim.calendar.session(c.expiration).close
    close = black_scholes(c, spot, implied_vol(sim.market.seed, c, spot), at)[0]
    day = c.expiration.isoformat()
    return base | {
        "status": "inactive",
        "tradable": False,
        "close_price": f"{close:.2f}",
        "close_price_date": day,
        "open_interest_date": day,
    }
