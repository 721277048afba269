"""Fault tests: real servers stopped, frozen or killed (the same fixtures as integration)."""

from tests.integration.fixtures.servers import *  # noqa: F403
