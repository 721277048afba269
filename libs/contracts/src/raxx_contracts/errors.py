"""Typed errors raised by the contracts package."""

from __future__ import annotations


class ContractError(ValueError):
    """Base class: a value cannot be expressed in the Raxx wire contract."""


class InvalidSymbolError(ContractError):
    """A symbol cannot be encoded into a NATS subject token (or decoded from one)."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"invalid symbol {symbol!r}: {reason}")
        self.symbol = symbol
        self.reason = reason


class UnknownTierError(ContractError):
    """A tier name that the policy does not define."""

    def __init__(self, tier: str) -> None:
        super().__init__(f"unknown tier {tier!r}")
        self.tier = tier


class DecodeError(ContractError):
    """A wire payload does not match the contract model it was decoded as."""
