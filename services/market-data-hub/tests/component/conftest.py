"""The hub's component fixtures come from the tests tree (never from src)."""

from tests.support.hub_fakes import env

__all__ = ["env"]
