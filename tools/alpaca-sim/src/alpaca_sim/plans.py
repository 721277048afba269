"""Alpaca's market-data plans as the simulator enforces them (`SIM_PLAN`).

`none` (the default) keeps every setting as given: every feed, no caps. `basic` and
`algo_trader_plus` set the defaults of the entitlement settings below the way Alpaca does (an
explicit `SIM_*` value still wins), so a test can run the same scenario against either plan.
"""

from __future__ import annotations

from typing import Any, Literal

Plan = Literal["none", "basic", "algo_trader_plus"]

PLAN_DEFAULTS: dict[str, dict[str, Any]] = {
    "basic": {
        # Basic streams IEX and indicative options; delayed SIP is accepted on the stream and on
        # latest/snapshot (Alpaca's way for a free key to show consolidated prices); SIP and OPRA
        # answer 409 on the stream and 403 on REST for the last 15 minutes.
        "feeds": ["iex", "delayed_sip", "test", "indicative"],
        "symbol_cap": 30,
        "option_quote_cap": 200,
        "allow_star": False,
        "rest_rate_limit": 200,
    },
    "algo_trader_plus": {
        "feeds": ["iex", "sip", "delayed_sip", "test", "indicative", "opra"],
        "symbol_cap": 0,
        "option_quote_cap": 1000,
        "allow_star": True,
        "rest_rate_limit": 10_000,
    },
}
PLAN_FIELDS = ("feeds", "symbol_cap", "option_quote_cap", "allow_star", "rest_rate_limit")
RECENT_SECONDS = 15 * 60
"""SIP/OPRA data younger than this needs the real-time feed in the plan (else 403)."""
RECENT_SIP_MESSAGE = "subscription does not permit querying recent SIP data"
RECENT_OPRA_MESSAGE = "subscription does not permit querying recent OPRA data"
HISTORY_FEEDS = frozenset({"iex", "sip", "otc", "boats"})
"""`feed` values Alpaca's historical endpoints accept (`delayed_sip` is not one)."""
LATEST_FEEDS = HISTORY_FEEDS | {"delayed_sip", "overnight"}
"""`feed` values of latest and snapshot endpoints."""
