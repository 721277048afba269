"""Shared test fixtures, registered once as pytest plugins for every test tree.

`tests.integration.fixtures.servers` starts the real servers (nats-server, PostgreSQL,
OpenBao, alpaca-sim) on free ports; integration, security, fault and the kit's real-server
tests all use it. Unit and component tests never request those fixtures, so nothing starts.
"""

pytest_plugins = ["tests.integration.fixtures.servers"]
