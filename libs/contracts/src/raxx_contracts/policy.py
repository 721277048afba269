"""The tier policy (`policy.toml`, shipped as package data) as typed, frozen data."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib.resources import files
from typing import Literal

from pydantic import Field, model_validator

from raxx_contracts import subjects
from raxx_contracts._base import WireModel
from raxx_contracts.enums import AssetClass, Path
from raxx_contracts.errors import UnknownTierError

Access = Literal["realtime", "delayed"]


class InterestQuota(WireModel):
    """What one user of a tier may lease from the hub, per asset class (each has its own cap)."""

    max_symbols_per_user: int = Field(gt=0)
    """Distinct symbols one user may hold leases on (all its consumers together)."""
    max_consumers_per_user: int = Field(gt=0)
    """Distinct consumer ids with leases one user may have at a time."""
    user_cap_share: float = Field(gt=0, le=1)
    """Share of the plan's symbol cap one user may hold (at least one symbol)."""
    tier_cap_share: float = Field(gt=0, le=1)
    """Share of the plan's symbol cap all users of this tier together may hold."""

    def user_limit(self, cap: int) -> int:
        """Distinct symbols one user may hold under a plan cap of `cap`."""
        return max(1, min(self.max_symbols_per_user, int(cap * self.user_cap_share)))

    def tier_limit(self, cap: int) -> int:
        """Distinct symbols the whole tier may hold under a plan cap of `cap`."""
        return max(1, int(cap * self.tier_cap_share))


class TierRule(WireModel):
    """What one tier may see and do."""

    equities: Access
    options: Access
    http: Access
    historical_option_chains: bool
    broker_handoff: bool
    paper_history_retention_days: int | None = None
    """None means unlimited."""
    max_subscriptions: int = Field(gt=0)
    credential_ttl_seconds: int = Field(gt=0)
    interest: InterestQuota


class HttpRate(WireModel):
    """Per-user request rate of one tier at the hub's HTTP API (`[http_rate.<tier>]`)."""

    requests_per_minute: int = Field(gt=0)
    burst: int = Field(gt=0)


class TierPolicy(WireModel):
    """All tiers, their order (lowest first) and the delay of the delayed path."""

    schema_version: Literal[1] = 1
    default_tier: str
    delay_seconds: int = Field(ge=0)
    tier_order: tuple[str, ...]
    tiers: dict[str, TierRule]
    http_rate: dict[str, HttpRate] = Field(default_factory=dict)
    """Per-user HTTP API rate of every tier at market-data-hub."""

    @model_validator(mode="after")
    def _consistent(self) -> TierPolicy:
        if set(self.tier_order) != set(self.tiers):
            raise ValueError("tier_order must list exactly the defined tiers")
        if self.default_tier not in self.tiers:
            raise ValueError("default_tier must be a defined tier")
        return self

    @model_validator(mode="after")
    def _every_tier_has_a_rate(self) -> TierPolicy:
        if set(self.http_rate) != set(self.tiers):
            raise ValueError("http_rate must define exactly the defined tiers")
        return self

    def http_rate_of(self, tier: str) -> HttpRate:
        """The per-user HTTP API rate of `tier`; UnknownTierError for a tier the policy lacks."""
        self.rule(tier)
        return self.http_rate[tier]

    def rule(self, tier: str) -> TierRule:
        """The rule of `tier`; raise UnknownTierError for a tier the policy lacks."""
        try:
            return self.tiers[tier]
        except KeyError:
            raise UnknownTierError(tier) from None

    def rank(self, tier: str) -> int:
        """Position in `tier_order` (0 = lowest)."""
        self.rule(tier)
        return self.tier_order.index(tier)

    def stream_path(self, tier: str, asset: AssetClass) -> Path:
        """Which path a tier's stream subscriptions for `asset` use."""
        rule = self.rule(tier)
        access = rule.equities if asset is AssetClass.STOCKS else rule.options
        return Path.RT if access == "realtime" else Path.DELAYED

    def http_path(self, tier: str) -> Path:
        """Which path the hub's HTTP API serves `tier`."""
        return Path.RT if self.rule(tier).http == "realtime" else Path.DELAYED

    def subscribe_allow(self, tier: str) -> tuple[str, ...]:
        """Subject patterns a credential of `tier` may subscribe to (the NATS allow-list)."""
        allow: list[str] = []
        for asset in AssetClass:
            allow.append(subjects.path_root(Path.DELAYED, asset))
            if self.stream_path(tier, asset) is Path.RT:
                allow.append(subjects.path_root(Path.RT, asset))
        return tuple(allow)

    def readable_streams(self, tier: str) -> tuple[str, ...]:
        """Capture streams a credential of `tier` may read (direct get, to recover gaps or start
        from a time): exactly those of the paths it may subscribe to."""
        streams: list[str] = []
        for asset in AssetClass:
            streams.append(subjects.capture_stream(Path.DELAYED, asset))
            if self.stream_path(tier, asset) is Path.RT:
                streams.append(subjects.capture_stream(Path.RT, asset))
        return tuple(streams)

    def eligible_for_handoff(self, tier: str) -> bool:
        """Whether `tier` may connect a live broker."""
        return self.rule(tier).broker_handoff


def parse_policy(text: str) -> TierPolicy:
    """Parse and validate a policy document (TOML)."""
    return TierPolicy.model_validate(tomllib.loads(text))


@cache
def default_policy() -> TierPolicy:
    """The policy shipped with this package."""
    return parse_policy(files("raxx_contracts").joinpath("policy.toml").read_text("utf-8"))
