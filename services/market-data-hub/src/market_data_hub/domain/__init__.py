"""Pure domain logic of the hub: leases, subscription planning, backoff, the delay gate."""

from raxx_service_kit.supervisor import Backoff

from market_data_hub.domain.clock import Clock, FakeClock, SystemClock
from market_data_hub.domain.delay import DelayGate, DelayItem
from market_data_hub.domain.leases import (
    Delta,
    InterestOutcome,
    Limits,
    OwnerLeases,
    SlotTable,
    apply_request,
)
from market_data_hub.domain.subscriptions import SubscriptionPlan, Subscriptions, plan_changes
from market_data_hub.domain.symbols import SymbolCheck, check_symbol

__all__ = [
    "Backoff",
    "Clock",
    "DelayGate",
    "DelayItem",
    "Delta",
    "FakeClock",
    "InterestOutcome",
    "Limits",
    "OwnerLeases",
    "SlotTable",
    "SubscriptionPlan",
    "Subscriptions",
    "SymbolCheck",
    "SystemClock",
    "apply_request",
    "check_symbol",
    "plan_changes",
]
