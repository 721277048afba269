"""Shared test fixtures, registered once as pytest plugins for every test tree.

`tests.integration.fixtures.servers` starts the real servers (nats-server, PostgreSQL,
OpenBao, alpaca-sim) on free ports; integration, security, fault and the kit's real-server
tests all use it. Unit and component tests never request those fixtures, so nothing starts.
`tests.support.messaging` gives component tests of faststream handlers their `settled` record.
"""

pytest_plugins = [
    "tests.integration.fixtures.servers",
    # `settled`: how the kit's ack policy settled each TestNatsBroker message (component tests).
    "tests.support.messaging",
]
