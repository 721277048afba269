"""The clock and the supervisor: restarts with backoff, give-up, health, clean stop."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from prometheus_client import CollectorRegistry
from raxx_service_kit.clock import ManualClock, SystemClock
from raxx_service_kit.http import supervisor_checks
from raxx_service_kit.supervisor import Backoff, Supervisor, restarts_counter


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("b", 2)), asyncio.create_task(sleeper("a", 1))]
    while clock.sleepers < 2:  # noqa: ASYNC110 - the clock has no event for this
        await asyncio.sleep(0)
    t0 = clock.now()
    clock.advance(1.5)
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.advance(0.5)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"]
    assert clock.now() - t0 == dt.timedelta(seconds=2)
    assert clock.monotonic() == 2
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


def test_system_clock_is_aware_utc() -> None:
    assert SystemClock().now().utcoffset() == dt.timedelta(0)


def test_backoff_grows_to_cap_with_jitter() -> None:
    b = Backoff(1, 8, rng=lambda: 1.0)
    assert [b.next() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    b = Backoff(1, 8, rng=lambda: 0.0)
    assert [b.next() for _ in range(3)] == [0.5, 1, 2]
    b.reset()
    assert b.next() == 0.5


async def test_crashing_task_is_restarted_reported_and_given_up() -> None:
    clock = ManualClock()
    registry = CollectorRegistry()
    sup = Supervisor(
        failing_after=2, give_up_after=3, clock=clock, restarts=restarts_counter(registry, "kit")
    )
    runs = 0

    async def crash() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError(f"boom {runs}")

    sup.start("worker", crash)
    for _ in range(200):
        if sup.health()[0].state == "given_up":
            break
        clock.advance(60)
        await asyncio.sleep(0)
    (h,) = sup.health()
    restarts = registry.get_sample_value("kit_task_restarts_total", {"task": "worker"})
    assert (h.state, h.failures, runs, restarts) == ("given_up", 3, 3, 2)
    assert "boom 3" in sup.problems()["worker"]
    assert "task:worker" in sup.liveness()
    check = supervisor_checks(sup)["task:worker"]
    assert not check.ok
    assert "given up" in (check.reason or "")
    await sup.stop()


async def test_stop_cancels_awaits_finally_and_leaks_nothing() -> None:
    sup = Supervisor()
    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            cleaned.set()

    sup.start("loop", forever)
    sup.start("loop", forever)  # already running: a no-op
    await started.wait()
    assert supervisor_checks(sup) == {"task:loop": supervisor_checks(sup)["task:loop"]}
    assert supervisor_checks(sup)["task:loop"].ok
    await sup.stop()
    assert cleaned.is_set()
    assert sup.health() == []
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftovers == []
