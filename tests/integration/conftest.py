"""Integration fixtures: real servers (see fixtures/servers.py)."""

from tests.integration.fixtures.servers import *  # noqa: F403
