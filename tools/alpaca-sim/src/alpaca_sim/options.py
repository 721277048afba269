"""Option contracts (OCC symbols), chains and Black-Scholes prices and greeks."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from alpaca_sim.calendar import NY, TradingCalendar
from alpaca_sim.market import Market, stable_hash

if TYPE_CHECKING:
    from alpaca_sim.live import LiveMarket

OCC_RE = re.compile(r"^([A-Z][A-Z0-9]{0,5})(\d{6})([CP])(\d{8})$")
RATE = 0.04
NAMESPACE = uuid.UUID("6c1f5c3e-3d0b-4c53-9d0e-5a1ce0000001")


@dataclass(frozen=True)
class Contract:
    """One option contract."""

    symbol: str
    root: str
    expiration: date
    call: bool
    strike: float

    @property
    def id(self) -> str:
        """Stable UUID of the contract."""
        return str(uuid.uuid5(NAMESPACE, self.symbol))


def is_occ(symbol: str) -> bool:
    """Whether `symbol` is an OCC option symbol."""
    return OCC_RE.match(symbol) is not None


def parse_occ(symbol: str) -> Contract:
    """Parse `AAPL240315C00172500`; ValueError if malformed."""
    m = OCC_RE.match(symbol)
    if m is None:
        raise ValueError(f"not an OCC option symbol: {symbol!r}")
    root, ymd, cp, strike = m.groups()
    expiration = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))
    return Contract(symbol, root, expiration, cp == "C", int(strike) / 1000.0)


def occ_symbol(root: str, expiration: date, call: bool, strike: float) -> str:
    """Build an OCC symbol."""
    return f"{root}{expiration:%y%m%d}{'C' if call else 'P'}{round(strike * 1000):08d}"


def asset_id(symbol: str) -> str:
    """Stable UUID of an underlying asset."""
    return str(uuid.uuid5(NAMESPACE, "asset:" + symbol))


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def implied_vol(seed: int, c: Contract, spot: float) -> float:
    """Model IV: a per-underlying level plus a smile in log-moneyness."""
    level = 0.2 + (stable_hash(seed, "iv", c.root) % 300) / 1000.0
    return round(level + 0.4 * math.log(c.strike / spot) ** 2, 6)


def black_scholes(
    c: Contract, spot: float, vol: float, at: datetime
) -> tuple[float, dict[str, float]]:
    """Price and greeks (delta, gamma, rho, theta per day, vega per vol point)."""
    expiry = datetime.combine(c.expiration, datetime.min.time(), NY) + timedelta(hours=16)
    t = max((expiry - at).total_seconds() / (365.0 * 86400.0), 1e-6)
    sq = vol * math.sqrt(t)
    d1 = (math.log(spot / c.strike) + (RATE + 0.5 * vol * vol) * t) / sq
    d2 = d1 - sq
    disc = math.exp(-RATE * t)
    if c.call:
        price = spot * _norm_cdf(d1) - c.strike * disc * _norm_cdf(d2)
        delta = _norm_cdf(d1)
        theta = -spot * _norm_pdf(d1) * vol / (
            2 * math.sqrt(t)
        ) - RATE * c.strike * disc * _norm_cdf(d2)
        rho = c.strike * t * disc * _norm_cdf(d2)
    else:
        price = c.strike * disc * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
        delta = _norm_cdf(d1) - 1.0
        theta = -spot * _norm_pdf(d1) * vol / (
            2 * math.sqrt(t)
        ) + RATE * c.strike * disc * _norm_cdf(-d2)
        rho = -c.strike * t * disc * _norm_cdf(-d2)
    greeks = {
        "delta": round(delta, 4),
        "gamma": round(_norm_pdf(d1) / (spot * sq), 4),
        "rho": round(rho / 100.0, 4),
        "theta": round(theta / 365.0, 4),
        "vega": round(spot * _norm_pdf(d1) * math.sqrt(t) / 100.0, 4),
    }
    return max(price, 0.01), greeks


def quote_around(price: float) -> tuple[float, float]:
    """Bid/ask of an option around its model price."""
    half = max(0.01, round(price * 0.02, 2))
    return max(round(price - half, 2), 0.0), round(price + half, 2)


def option_quote_from_underlying(
    live: LiveMarket, symbol: str, at: datetime
) -> tuple[float, float, float]:
    """(model price, bid, ask) of a contract at the underlying's live price."""
    c = parse_occ(symbol)
    spot = live.state(c.root).price
    price, _ = black_scholes(c, spot, implied_vol(live.market.seed, c, spot), at)
    price = round(price, 2)
    bid, ask = quote_around(price)
    return price, bid, ask


def expirations(calendar: TradingCalendar, today: date) -> list[date]:
    """Four weekly expirations and the next three monthly (third Friday) ones."""
    friday = today + timedelta(days=(4 - today.weekday()) % 7)
    out = {friday + timedelta(weeks=i) for i in range(4)}
    year, month, monthly = today.year, today.month, 0
    while monthly < 3:
        first = date(year, month, 1)
        third = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        if third >= today:
            out.add(third)
            monthly += 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    adjusted = set()
    for d in out:
        while not calendar.is_trading_day(d) and d > today:
            d -= timedelta(days=1)  # holiday Friday: expire on the Thursday
        adjusted.add(d)
    return sorted(adjusted)


def strike_step(spot: float) -> float:
    """Listed strike spacing for a given price level."""
    if spot < 25:
        return 0.5
    if spot < 100:
        return 1.0
    if spot < 250:
        return 2.5
    return 5.0


def chain(market: Market, underlying: str, today: date) -> list[Contract]:
    """Every listed contract of `underlying` as of `today`, sorted by symbol."""
    prev = market.calendar.previous_day(today + timedelta(days=1))
    spot = market.daily_bar(underlying, prev)[3] if prev else market.base_price(underlying)
    step = strike_step(spot)
    centre = round(spot / step) * step
    strikes = [round(centre + k * step, 3) for k in range(-10, 11) if centre + k * step > 0]
    out = [
        Contract(occ_symbol(underlying, exp, call, k), underlying, exp, call, k)
        for exp in expirations(market.calendar, today)
        for k in strikes
        for call in (True, False)
    ]
    return sorted(out, key=lambda c: c.symbol)
