"""The delayed path never publishes early: property test with a clock that wakes early."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from market_data_hub.domain import DelayGate, DelayItem, FakeClock
from market_data_hub.normalize import event_ns, rfc3339_ns
from raxx_contracts import dumps

DELAY_NS = 900 * 1_000_000_000


def payload(t_ns: int) -> bytes:
    return dumps({"symbol": "AAPL", "timestamp": rfc3339_ns(*divmod(t_ns, 1_000_000_000))})


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(-2_000_000_000_000, 2_000_000_000_000), min_size=1, max_size=40),
    early=st.floats(0.01, 1.0),
    idle=st.lists(st.floats(0, 30), min_size=1, max_size=40),
)
def test_nothing_is_released_before_event_time_plus_delay(
    offsets: list[int], early: float, idle: list[float]
) -> None:
    clock = FakeClock()
    clock.early_wake = early
    start = clock.now_ns()
    released: list[tuple[int, int, bytes]] = []

    async def publish(item: DelayItem) -> None:
        released.append((clock.now_ns(), int(item.subject), item.data))

    gate = DelayGate(clock, DELAY_NS, event_ns, publish)
    items = [DelayItem(i + 1, str(i), payload(start + off)) for i, off in enumerate(offsets)]

    async def run() -> None:
        for i, item in enumerate(items):
            clock.advance(idle[i % len(idle)])
            await gate.release([item])

    asyncio.run(run())
    assert len(released) == len(items)
    for now, _, data in released:
        assert now >= event_ns(data) + DELAY_NS
    assert [i for _, i, _ in released] == list(range(len(items)))
    assert gate.released_seq == len(items)


def test_item_without_event_time_is_skipped_not_published() -> None:
    clock = FakeClock()
    out: list[str] = []
    skipped: list[int] = []

    async def publish(item: DelayItem) -> None:
        out.append(item.subject)

    gate = DelayGate(clock, 1, event_ns, publish, on_skip=lambda i: skipped.append(i.seq))
    asyncio.run(gate.release([DelayItem(1, "x", b"{}"), DelayItem(2, "y", payload(0))]))
    assert out == ["y"]
    assert skipped == [1]
