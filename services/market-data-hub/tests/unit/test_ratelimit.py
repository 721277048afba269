"""Per-user buckets and the split Alpaca budget (pure, injected clock)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_data_hub.domain.ratelimit import KeyedBuckets, SharedBudget


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_users_never_wait_and_never_take_the_reserve() -> None:
    clock = Clock()
    budget = SharedBudget(120, 0.25, monotonic=clock)  # users 90/min (burst 15), reserve 30/min
    taken = 0
    while budget.try_user() == 0.0:
        taken += 1
    assert taken == 15
    wait = budget.try_user()
    assert 0 < wait <= 60 / 90 + 1e-9  # refused at once, told when the pool refills
    for _ in range(5):
        assert budget.try_internal() == 0.0  # the reserve (burst 5) is untouched by users
    assert budget.try_internal() > 0  # reserve spent, users' pool empty


def test_internal_borrows_an_idle_users_pool() -> None:
    clock = Clock()
    budget = SharedBudget(120, 0.25, monotonic=clock)
    got = sum(1 for _ in range(30) if budget.try_internal() == 0.0)
    assert got == 5 + 15  # its reserve, then what users left


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 20)), min_size=1, max_size=60),
    share=st.floats(0.05, 0.95),
)
def test_users_get_at_most_their_share_and_cannot_touch_the_internal_side(
    steps: list[tuple[float, int]], share: float
) -> None:
    """However hard users hammer, internal calls get exactly what they get with no users."""
    clock = Clock()
    rate = 120.0
    busy, idle = (SharedBudget(rate, share, monotonic=clock) for _ in range(2))
    users = 0
    got_busy: list[bool] = []
    got_idle: list[bool] = []
    elapsed = 0.0
    for dt, tries in steps:
        clock.t += dt
        elapsed += dt
        users += sum(1 for _ in range(tries) if busy.try_user() == 0.0)
        got_busy.append(busy.reserved.try_take() == 0.0)
        got_idle.append(idle.reserved.try_take() == 0.0)
    assert got_busy == got_idle
    assert users <= busy.users.capacity + rate * (1 - share) / 60 * elapsed + 1e-6


def test_acquire_internal_waits_for_the_reserve() -> None:
    async def run() -> float:
        budget = SharedBudget(6000, 0.5)  # 50/s each
        while budget.try_user() == 0.0:
            pass
        while budget.reserved.try_take() == 0.0:
            pass
        return await asyncio.wait_for(budget.acquire_internal(), 2)

    assert 0 < asyncio.run(run()) < 1


def test_keyed_buckets_are_per_user_and_bounded() -> None:
    clock = Clock()
    keyed = KeyedBuckets(max_keys=100, monotonic=clock)
    assert [keyed.try_take("a", 60, 2) for _ in range(3)][:2] == [0.0, 0.0]
    assert keyed.try_take("a", 60, 2) > 0
    assert keyed.try_take("b", 60, 2) == 0.0  # another user is not affected
    # a tier change keeps what was spent (no free refill by switching rates)
    assert keyed.try_take("a", 600, 20) > 0
    for i in range(1000):
        keyed.try_take(f"user-{i}", 60, 2)
    assert len(keyed) <= 100


def test_budget_share_is_validated() -> None:
    for bad in (0.0, 1.0, -1.0):
        with pytest.raises(ValueError, match="reserved_share"):
            SharedBudget(100, bad)
