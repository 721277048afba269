"""Cached, bounded dependency probes feeding the kit's `/readyz` body.

`/readyz` must answer at once whatever is down, so it never probes: each dependency is probed
in the background every `interval` seconds, and `/readyz` reads the last result. A probe that
has not answered after `slow_after` seconds is reported as not answering (with how long), and
no second probe of the same dependency starts while one is still out, so a frozen server costs
one stuck probe, never a pile of them. A *critical* check failing makes the replica
`not_ready` (503: issuance needs it); any other only `degraded` (200).

The body is the service kit's (`raxx_service_kit.http.Readiness`); each failing check's
`reason` names the real cause and, in brackets, what it means for this replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from raxx_service_kit.http import Check

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """One dependency: `probe()` returns when healthy and raises (the reason) otherwise."""

    name: str
    probe: Callable[[], Awaitable[None]]
    critical: bool
    impact: str
    """What a failure means for this replica (shown next to the reason)."""


def reason_of(exc: BaseException) -> str:
    """A short, real reason for an exception (type and first line of its text)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


@dataclass
class Probes:
    """The last known state of every probe, refreshed by `run()`."""

    probes: list[Probe]
    interval: float = 1.0
    slow_after: float = 1.0
    _failing: dict[str, str] = field(default_factory=dict)
    _out: dict[str, tuple[asyncio.Task[None], float]] = field(default_factory=dict)

    async def tick(self) -> None:
        """Probe every dependency once (bounded by `slow_after`)."""
        now = time.monotonic()
        for p in self.probes:
            if p.name not in self._out:
                self._out[p.name] = (asyncio.ensure_future(p.probe()), now)
        await asyncio.wait([task for task, _ in self._out.values()], timeout=self.slow_after)
        now = time.monotonic()
        for p in self.probes:
            task, started = self._out[p.name]
            if not task.done():
                self._failing[p.name] = f"no answer for {now - started:.1f} s"
                continue
            del self._out[p.name]
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if exc is None:
                if self._failing.pop(p.name, None) is not None:
                    log.info("%s is healthy again", p.name)
            else:
                if p.name not in self._failing:
                    log.warning("%s unhealthy: %s", p.name, reason_of(exc))
                self._failing[p.name] = reason_of(exc)

    async def run(self) -> None:
        """Probe forever (a supervised background task)."""
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self.interval)
        finally:
            for task, _ in self._out.values():
                task.cancel()
            self._out.clear()

    def checks(self) -> dict[str, Check]:
        """The kit's checks from the last results (never waits)."""
        out: dict[str, Check] = {}
        for p in self.probes:
            reason = self._failing.get(p.name)
            out[p.name] = Check(
                ok=reason is None,
                reason=None if reason is None else f"{reason} ({p.impact})",
                critical=p.critical,
            )
        return out
