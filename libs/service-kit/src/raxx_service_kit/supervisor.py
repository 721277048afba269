"""One supervisor for every background task of a service (the hub's, moved here).

Each task is registered with a *factory* (a callable returning a fresh coroutine), never a
coroutine object: a coroutine runs once, so a restart must build a new one. A task that raises
(or returns: a supervised task runs until cancelled) is restarted after a capped exponential
backoff with jitter; a run that lasted `healthy_after` seconds resets the backoff. A task that
failed `failing_after` times in a row is reported by `problems()` (-> `/readyz`); after
`give_up_after` consecutive failures (None: never) it is no longer restarted and `liveness()`
reports it (-> `/healthz`: the orchestrator restarts the pod).

A heartbeat measures event-loop lag; `liveness()` also fails when it is stale (a blocked loop).

`stop()` is cancellation-safe: it cancels, then waits (bounded) for every task's `finally`
blocks; a task that ignores cancellation is logged and abandoned, never silently leaked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from raxx_service_kit.clock import Clock, SystemClock

log = logging.getLogger(__name__)
Factory = Callable[[], Coroutine[Any, Any, None]]
TaskState = Literal["starting", "running", "backoff", "given_up", "stopped"]


class Backoff:
    """Delays initial, 2*initial, ... capped at `maximum`; each drawn from [d/2, d] (jitter)."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        """The next delay in seconds; grows until `maximum`."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return float(ceiling / 2 + self._rng() * ceiling / 2)

    def reset(self) -> None:
        """Start again from `initial` (after a healthy run)."""
        self.attempt = 0


@dataclass
class TaskHealth:
    """What the supervisor knows about one task."""

    name: str
    group: str
    state: TaskState = "starting"
    starts: int = 0
    failures: int = 0
    """Consecutive failures (reset by a run that lasted `healthy_after`)."""
    last_error: str | None = None


@dataclass
class _Entry:
    health: TaskHealth
    factory: Factory
    backoff: Backoff
    task: asyncio.Task[None] | None = field(default=None)


def restarts_counter(registry: CollectorRegistry, prefix: str) -> Counter:
    """`<prefix>_task_restarts_total{task}`: every service's supervisor restarts, one shape."""
    return Counter(
        f"{prefix}_task_restarts",
        "Restarts of supervised background tasks, by task",
        ["task"],
        registry=registry,
    )


class Supervisor:
    """Runs named tasks from factories; restarts, reports and stops them."""

    def __init__(
        self,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        healthy_after: float = 30.0,
        failing_after: int = 3,
        give_up_after: int | None = 20,
        heartbeat_seconds: float = 0.5,
        stale_after: float = 10.0,
        clock: Clock | None = None,
        restarts: Counter | None = None,
    ) -> None:
        """`restarts` (from :func:`restarts_counter`) counts each restart by task; `clock`
        times backoff sleeps and healthy runs (the heartbeat always uses real time)."""
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.failing_after = failing_after
        self.give_up_after = give_up_after
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self._restarts = restarts
        self.clock: Clock = clock or SystemClock()
        self._entries: dict[str, _Entry] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self.last_beat = time.monotonic()
        self.max_lag = 0.0
        self._lag_window: list[tuple[float, float]] = []

    # -- running ------------------------------------------------------------------------------

    def start(self, name: str, factory: Factory, group: str = "default") -> None:
        """Run `factory()` under supervision (no-op when `name` is already running)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="supervisor-heartbeat")
        old = self._entries.get(name)
        if old is not None and old.task is not None and not old.task.done():
            return
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        entry = _Entry(TaskHealth(name, group), factory, backoff)
        self._entries[name] = entry
        entry.task = asyncio.create_task(self._run(entry), name=name)

    async def _run(self, entry: _Entry) -> None:
        h = entry.health
        while True:
            h.state = "running"
            h.starts += 1
            began = self.clock.monotonic()
            try:
                await entry.factory()
                error = "exited (a supervised task must run until cancelled)"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("task %s crashed: %s", h.name, error, exc_info=exc)
            if self.clock.monotonic() - began >= self.healthy_after:
                h.failures = 0
                entry.backoff.reset()
            h.failures += 1
            h.last_error = error
            if self.give_up_after is not None and h.failures >= self.give_up_after:
                h.state = "given_up"
                log.error("task %s failed %d times in a row: giving up", h.name, h.failures)
                return
            delay = entry.backoff.next()
            h.state = "backoff"
            log.warning("restarting task %s in %.1f s (failure %d)", h.name, delay, h.failures)
            await self.clock.sleep(delay)
            if self._restarts is not None:
                self._restarts.labels(h.name).inc()

    async def stop(self, *, group: str | None = None, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Cancel the tasks of `group` (all, and the heartbeat, when None) and wait (bounded)."""
        entries = [e for e in self._entries.values() if group is None or e.health.group == group]
        tasks = [e.task for e in entries if e.task is not None and not e.task.done()]
        for t in tasks:
            t.cancel()
        if group is None and self._heartbeat is not None:
            self._heartbeat.cancel()
            tasks.append(self._heartbeat)
            self._heartbeat = None
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.error("task %s did not stop within %.1f s; abandoned", t.get_name(), timeout)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.warning("task %s ended with %r", t.get_name(), t.exception())
        for e in entries:
            e.health.state = "stopped"
            self._entries.pop(e.health.name, None)

    def running(self, group: str) -> bool:
        """Whether any task of `group` is registered (started and not stopped)."""
        return any(e.health.group == group for e in self._entries.values())

    # -- health -------------------------------------------------------------------------------

    def health(self) -> list[TaskHealth]:
        """Every registered task's health."""
        return [e.health for e in self._entries.values()]

    def problems(self) -> dict[str, str]:
        """Tasks that cannot be kept alive: name -> why (for `/readyz`)."""
        out: dict[str, str] = {}
        for h in self.health():
            if h.state == "given_up":
                out[h.name] = f"given up after {h.failures} failures in a row; last: {h.last_error}"
            elif h.failures >= self.failing_after:
                out[h.name] = f"crashing ({h.failures} failures in a row); last: {h.last_error}"
        return out

    def liveness(self) -> dict[str, str]:
        """Why this process is wedged (empty when alive), for `/healthz`."""
        out: dict[str, str] = {}
        stale = time.monotonic() - self.last_beat
        if self._heartbeat is not None and self._heartbeat.done():
            out["heartbeat"] = "supervisor heartbeat is not running"
        elif self._heartbeat is not None and stale > self.stale_after:
            out["heartbeat"] = f"supervisor heartbeat stale for {stale:.1f} s (event loop blocked)"
        if self.max_lag > self.stale_after:
            out["event_loop"] = f"event loop lagged {self.max_lag:.1f} s in the last window"
        for h in self.health():
            if h.state == "given_up":
                out[f"task:{h.name}"] = f"given up; last error: {h.last_error}"
        return out

    async def _beat(self) -> None:
        period = self.heartbeat_seconds
        while True:
            before = time.monotonic()
            await asyncio.sleep(period)
            now = time.monotonic()
            lag = max(0.0, now - before - period)
            self.last_beat = now
            window = [(t, x) for t, x in self._lag_window if now - t <= self.stale_after]
            window.append((now, lag))
            self._lag_window = window
            self.max_lag = max(x for _, x in window)
