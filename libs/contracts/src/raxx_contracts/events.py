"""Business events: tier changes from billing and live-broker handoff events."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raxx_contracts._base import WireModel
from raxx_contracts.timestamps import NanoDatetime


class TierChanged(WireModel):
    """A user's tier as billing now sees it (`billing.tier.changed`, JetStream)."""

    schema_version: Literal[1] = 1
    user_id: str = Field(min_length=1, max_length=200)
    tier: str
    version: int = Field(ge=0)
    """Monotonic per user; an event older than the stored version is ignored."""
    timestamp: NanoDatetime


HandoffEventKind = Literal["connected", "disconnected", "revoked", "connect_failed"]


class HandoffEvent(WireModel):
    """A live-broker connection changed (`broker.handoff.events`); never carries a secret."""

    schema_version: Literal[1] = 1
    user_id: str
    kind: HandoffEventKind
    env: Literal["live", "paper"]
    timestamp: NanoDatetime
    reason: str = ""
