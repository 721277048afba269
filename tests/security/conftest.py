"""Attack tests: a hostile user against real servers (the same fixtures as integration)."""

from tests.integration.fixtures.servers import *  # noqa: F403
