"""Test support for faststream handlers on `TestNatsBroker`: record how the kit's ack policy
settled each JetStream test message, for the component tests of every service.

Registered once as a pytest plugin by the root `conftest.py`: request the `settled` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest
from faststream.nats.testing import PatchedMessage


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What happened to each JetStream test message: ("ack"|"nak"|"term", delay)."""
    seen: list[tuple[str, Any]] = []

    async def ack(self: PatchedMessage) -> None:
        seen.append(("ack", None))

    async def nak(self: PatchedMessage, delay: float | None = None) -> None:
        seen.append(("nak", delay))

    async def term(self: PatchedMessage) -> None:
        seen.append(("term", None))

    monkeypatch.setattr(PatchedMessage, "ack", ack)
    monkeypatch.setattr(PatchedMessage, "nak", nak)
    monkeypatch.setattr(PatchedMessage, "term", term)
    return seen
