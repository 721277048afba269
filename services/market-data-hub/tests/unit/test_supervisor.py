"""The kit's supervisor as the hub uses it: fresh coroutines, restarts, groups, stop."""

from __future__ import annotations

import asyncio
import time

from raxx_service_kit.supervisor import Supervisor


def fast(**kw: float) -> Supervisor:
    opts: dict[str, float] = {
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
        "heartbeat_seconds": 0.01,
    }
    opts.update(kw)
    return Supervisor(**opts)  # type: ignore[arg-type]


async def test_each_start_builds_a_fresh_coroutine_and_a_crash_is_restarted() -> None:
    sup = fast()
    runs: list[int] = []
    third = asyncio.Event()

    async def task() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        third.set()
        await asyncio.Event().wait()

    sup.start("t", task)
    await asyncio.wait_for(third.wait(), 5)
    (h,) = sup.health()
    assert (h.starts, h.state, h.last_error) == (3, "running", "RuntimeError: boom 2")
    assert sup.problems() == {}  # 2 failures < failing_after (3)
    await sup.stop()
    assert sup.health() == []


async def test_a_group_stops_and_starts_again_any_number_of_times() -> None:
    sup = fast()
    started = 0

    async def leader_task() -> None:
        nonlocal started
        started += 1
        await asyncio.Event().wait()

    for term in range(1, 4):
        sup.start("upstream", leader_task, group="leader")
        await asyncio.sleep(0.02)
        assert sup.running("leader")
        await sup.stop(group="leader")
        assert not sup.running("leader")
        assert started == term
    await sup.stop()


async def test_a_task_that_keeps_crashing_is_reported_then_given_up() -> None:
    sup = fast(failing_after=2, give_up_after=4)

    async def broken() -> None:
        raise OSError("no route")

    sup.start("delay-line", broken)
    deadline = time.monotonic() + 5
    while sup.health()[0].state != "given_up":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert "given up after 4 failures" in sup.problems()["delay-line"]
    assert "OSError: no route" in sup.liveness()["task:delay-line"]
    await sup.stop()


async def test_a_returning_task_counts_as_a_failure() -> None:
    sup = fast(failing_after=1)

    async def returns() -> None:
        return None

    sup.start("t", returns)
    await asyncio.sleep(0.05)
    assert "exited" in sup.problems()["t"]
    await sup.stop()


async def test_stop_is_bounded_when_a_task_ignores_cancellation() -> None:
    sup = fast()
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # cleanup that hangs

    sup.start("stubborn", stubborn)
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    await sup.stop(timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    release.set()
    await asyncio.sleep(0)


async def test_liveness_fails_when_the_event_loop_was_blocked() -> None:
    sup = fast(stale_after=0.1)
    sup.start("idle", lambda: asyncio.Event().wait())  # type: ignore[arg-type, return-value]
    await asyncio.sleep(0.05)
    assert sup.liveness() == {}
    time.sleep(0.3)  # noqa: ASYNC251 - the point: block the loop
    assert "heartbeat" in sup.liveness()
    await asyncio.sleep(0.05)
    assert "event_loop" in sup.liveness()  # the lag stays visible for the window
    await sup.stop()
