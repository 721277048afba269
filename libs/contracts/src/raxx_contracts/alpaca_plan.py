"""Alpaca's market-data plans (`ALPACA_PLAN`): what each one sets, in one table.

Read by the hub and the settler (`ALPACA_PLAN` = `basic` | `algo_trader_plus`); a service's own
explicit settings override any value taken from here. Figures are Alpaca's published limits
("About Market Data API"): Basic streams IEX (30 stock symbols, 200 option quotes, indicative
options) and may call REST 200 times a minute; Algo Trader Plus streams SIP and OPRA (stock
symbols unlimited, 1000 option quotes) at 10,000 a minute. SIP history older than 15 minutes is
free on both, so history and settles use SIP whatever the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlpacaPlan(StrEnum):
    """The account's market-data subscription."""

    BASIC = "basic"
    ALGO_TRADER_PLUS = "algo_trader_plus"


UNLIMITED_STOCK_SYMBOLS = 2000
"""Algo Trader Plus has no stock symbol cap; the hub still needs a number for its fair shares and
for bounding the lease slot table (about 2000 symbols fit `lease_record_max_bytes` = 256 KiB)."""

RECENT_SIP_SECONDS = 15 * 60
"""SIP data younger than this is refused (403) to a key without real-time SIP."""
CLOCK_MARGIN_SECONDS = 30
"""Slack for the difference between our clock and Alpaca's when judging "15 minutes old"."""


@dataclass(frozen=True)
class PlanLimits:
    """What one plan gives: stream feeds, symbol caps, REST budget, and history rights."""

    plan: AlpacaPlan
    stock_feed: str
    """Real-time stock stream: `iex` (Basic) or `sip`."""
    options_feed: str
    """Options stream and REST: `indicative` (Basic) or `opra`."""
    stock_symbol_cap: int
    option_quote_cap: int
    rest_rate_per_min: int
    realtime_sip: bool
    """Whether SIP (stream, latest, and history of the last 15 minutes) is entitled."""


PLANS: dict[AlpacaPlan, PlanLimits] = {
    AlpacaPlan.BASIC: PlanLimits(
        AlpacaPlan.BASIC, "iex", "indicative", 30, 200, 200, realtime_sip=False
    ),
    AlpacaPlan.ALGO_TRADER_PLUS: PlanLimits(
        AlpacaPlan.ALGO_TRADER_PLUS, "sip", "opra", UNLIMITED_STOCK_SYMBOLS, 1000, 10_000,
        realtime_sip=True,
    ),
}  # fmt: skip


def limits(plan: AlpacaPlan | str) -> PlanLimits:
    """The table row of `plan` (ValueError for an unknown name)."""
    return PLANS[AlpacaPlan(plan)]


def history_feed(end_epoch_s: float, now_epoch_s: float, realtime_sip: bool) -> str:
    """The feed a historical request ending at `end_epoch_s` should use.

    SIP whenever the plan allows it: always with real-time SIP, otherwise when the window ended
    at least 15 minutes ago (with `CLOCK_MARGIN_SECONDS` of slack); else IEX. Never
    `delayed_sip`: Alpaca accepts it only on streams and latest/snapshot endpoints.
    """
    if realtime_sip or end_epoch_s <= now_epoch_s - (RECENT_SIP_SECONDS + CLOCK_MARGIN_SECONDS):
        return "sip"
    return "iex"
