"""Readiness from cached, bounded probes: `/readyz` reads a snapshot and never waits.

Each dependency is probed in the background every `interval` seconds. A probe that has not
answered after `slow_after` seconds is reported as not answering (with how long), and no
second probe of the same dependency starts while one is still out, so a frozen server costs
one stuck probe, never a pile of them. Checks are *essential* (issuing credentials needs
them: a failure makes `/readyz` 503) or not (a failure is reported as degraded, 200).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One dependency: `probe()` returns when healthy and raises (the reason) otherwise."""

    name: str
    probe: Callable[[], Awaitable[None]]
    essential: bool
    impact: str
    """What a failure means for this replica (shown next to the reason)."""


def reason_of(exc: BaseException) -> str:
    """A short, real reason for an exception (type and first line of its text)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


@dataclass
class Readiness:
    """The last known state of every check, refreshed by `run()`."""

    checks: list[Check]
    interval: float = 1.0
    slow_after: float = 1.0
    extra: Callable[[], dict[str, tuple[bool, str]]] | None = None
    """Live conditions (name -> (essential, reason)) added to every snapshot."""
    _failing: dict[str, str] = field(default_factory=dict)
    _out: dict[str, tuple[asyncio.Task[None], float]] = field(default_factory=dict)
    checked_at: float = 0.0

    async def tick(self) -> None:
        """Probe every check once (bounded by `slow_after`)."""
        now = time.monotonic()
        for check in self.checks:
            if check.name not in self._out:
                task = asyncio.ensure_future(check.probe())
                self._out[check.name] = (task, now)
        tasks = [task for task, _ in self._out.values()]
        await asyncio.wait(tasks, timeout=self.slow_after)
        now = time.monotonic()
        for check in self.checks:
            task, started = self._out[check.name]
            if not task.done():
                self._failing[check.name] = f"no answer for {now - started:.1f} s"
                continue
            del self._out[check.name]
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if exc is None:
                if self._failing.pop(check.name, None) is not None:
                    log.info("%s is healthy again", check.name)
            else:
                if check.name not in self._failing:
                    log.warning("%s unhealthy: %s", check.name, reason_of(exc))
                self._failing[check.name] = reason_of(exc)
        self.checked_at = now

    async def run(self) -> None:
        """Probe forever (a supervised background task)."""
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    def snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        """(down, degraded): name -> reason; `down` names what stops issuing credentials."""
        down: dict[str, str] = {}
        degraded: dict[str, str] = {}
        for check in self.checks:
            reason = self._failing.get(check.name)
            if reason is not None:
                (down if check.essential else degraded)[check.name] = f"{reason} ({check.impact})"
        for name, (essential, reason) in (self.extra() if self.extra else {}).items():
            (down if essential else degraded)[name] = reason
        return down, degraded

    def stop(self) -> None:
        """Cancel probes still out."""
        for task, _ in self._out.values():
            task.cancel()
