"""`make run`'s supervisor: keeps every service up, and stops the stack only when it must.

A service that exits is restarted with exponential backoff (1, 2, 4, ... s, at most 30 s), and
the terminal says which one, how it ended, when it restarts and where its log is, then that it
is ready again. The stack stops only when

- a server that `make run` started (nats-server, PostgreSQL, OpenBao, alpaca-sim) exits: the
  services' state lives in it (OpenBao's dev server keeps every secret in memory, JetStream and
  KV in nats-server), so restarting it under running services would not give back a working
  stack; or
- a service keeps crashing: `max_crashes` exits in a row, none after staying up `stable_seconds`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from raxx_devstack.procs import ManagedProcess
from raxx_devstack.servers import Server


@dataclass
class Watched:
    """One supervised service: its process, its readiness probe and its crash history."""

    proc: ManagedProcess
    ready: Callable[[], bool]
    crashes: int = 0
    up_since: float | None = None
    exited_at: float | None = None
    restart_at: float | None = None
    starting_since: float | None = None


def describe_exit(returncode: int | None) -> str:
    """`code 3` or `signal SIGKILL`, as the terminal shows it."""
    if returncode is None:
        return "an unknown status"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


class Supervisor:
    """Polls the servers and services `make run` started; restarts services that exit."""

    def __init__(
        self,
        say: Callable[[str], None],
        services: Sequence[Watched],
        servers: Sequence[Server],
        root: Path,
        *,
        backoff_first: float = 1.0,
        backoff_max: float = 30.0,
        max_crashes: int = 5,
        stable_seconds: float = 60.0,
        ready_timeout: float = 90.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say = say
        self.services = list(services)
        self.servers = list(servers)
        self.root = root
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.max_crashes = max_crashes
        self.stable_seconds = stable_seconds
        self.ready_timeout = ready_timeout
        self.clock = clock
        now = clock()
        for watched in self.services:
            watched.up_since = now

    def _where(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def run(self, interval: float = 0.5) -> int:
        """Supervise until the stack must stop; the exit status of `make run`."""
        while (status := self.step()) is None:
            time.sleep(interval)
        return status

    def step(self) -> int | None:
        """One look at everything: None to keep going, else the exit status."""
        for server in self.servers:
            if not server.process.alive():
                rc = server.process.proc.returncode if server.process.proc else None
                self.say(
                    f"{server.name} (a server make run started) exited with {describe_exit(rc)}; "
                    "the services' state lives in it, so restarting it would not give back a "
                    f"working stack: stopping the stack. Its log: "
                    f"{self._where(server.process.log_path)}\n{server.process.log_tail(10)}"
                )
                return 1
        now = self.clock()
        for watched in self.services:
            status = self._step_service(watched, now)
            if status is not None:
                return status
        return None

    def _step_service(self, w: Watched, now: float) -> int | None:
        name, log = w.proc.name, self._where(w.proc.log_path)
        if w.restart_at is not None:
            if now >= w.restart_at:
                w.restart_at, w.starting_since = None, now
                w.proc.start()
                self.say(f"{name}: restarted (pid {w.proc.pid}), waiting for its /readyz")
            return None
        if not w.proc.alive():
            rc = w.proc.proc.returncode if w.proc.proc else None
            w.proc.kill_group()  # anything the dead process left in its group
            if w.up_since is not None and now - w.up_since >= self.stable_seconds:
                w.crashes = 0
            w.crashes += 1
            w.up_since, w.starting_since, w.exited_at = None, None, now
            if w.crashes > self.max_crashes:
                self.say(
                    f"{name} exited with {describe_exit(rc)} and keeps crashing "
                    f"({w.crashes} exits in a row, none after staying up "
                    f"{self.stable_seconds:.0f} s): stopping the stack. Its log: {log}\n"
                    f"{w.proc.log_tail(20)}"
                )
                return 1
            delay = min(self.backoff_first * 2 ** (w.crashes - 1), self.backoff_max)
            w.restart_at = now + delay
            self.say(
                f"{name} exited with {describe_exit(rc)}; restarting it in {delay:g} s "
                f"(restart {w.crashes} of at most {self.max_crashes} in a row). Its log: {log}"
            )
            return None
        if w.starting_since is not None:
            if w.ready():
                took = now - (w.exited_at if w.exited_at is not None else w.starting_since)
                w.up_since, w.starting_since = now, None
                self.say(f"{name}: ready again, {took:.1f} s after it exited")
            elif now - w.starting_since > self.ready_timeout:
                self.say(
                    f"{name}: not ready {self.ready_timeout:.0f} s after its restart; "
                    f"stopping it to restart it. Its log: {log}"
                )
                w.proc.stop()
        return None
