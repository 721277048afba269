"""The dev supervisor with real child processes: restart with backoff, give up, stop on a server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from raxx_devstack.procs import ManagedProcess
from raxx_devstack.servers import Server
from raxx_devstack.supervise import Supervisor, Watched, describe_exit


def _proc(tmp_path: Path, name: str, code: str) -> ManagedProcess:
    argv = [sys.executable, "-c", code]
    return ManagedProcess(name, argv, tmp_path / "logs" / f"{name}.log").start()


def _until(sup: Supervisor, seconds: float, done: object = None) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = sup.step()
        if status is not None or (callable(done) and done()):
            return status
        time.sleep(0.05)
    return None


def test_a_service_that_exits_is_restarted_and_said_so(tmp_path: Path) -> None:
    lines: list[str] = []
    marker = tmp_path / "second-start"
    # exits with 3 the first time, stays up the second time
    code = (
        f"import pathlib, sys, time; m = pathlib.Path({str(marker)!r})\n"
        "if not m.with_suffix('.1').exists():\n"
        "    m.with_suffix('.1').touch(); sys.exit(3)\n"
        "m.touch(); time.sleep(60)\n"
    )
    svc = Watched(_proc(tmp_path, "svc", code), ready=marker.exists)
    sup = Supervisor(lines.append, [svc], [], tmp_path, backoff_first=0.2)
    try:
        status = _until(sup, 20, lambda: any("ready again" in line for line in lines))
        assert status is None
        assert svc.proc.alive()
        assert lines[0].startswith("svc exited with code 3; restarting it in 0.2 s"), lines
        assert "Its log: logs/svc.log" in lines[0]
        assert lines[1].startswith("svc: restarted (pid ")
        assert lines[2].startswith("svc: ready again, ")
    finally:
        svc.proc.stop()


def test_a_service_that_keeps_crashing_stops_the_stack(tmp_path: Path) -> None:
    lines: list[str] = []
    svc = Watched(_proc(tmp_path, "svc", "print('boom'); raise SystemExit(2)"), ready=lambda: False)
    sup = Supervisor(lines.append, [svc], [], tmp_path, backoff_first=0.05, max_crashes=3)
    assert _until(sup, 30) == 1
    assert sum("restarting it in" in line for line in lines) == 3
    assert "keeps crashing (4 exits in a row" in lines[-1]
    assert "boom" in lines[-1]  # the log tail comes with it


def test_backoff_doubles_and_is_capped() -> None:
    now = [0.0]
    lines: list[str] = []

    class Dead(ManagedProcess):
        def alive(self) -> bool:
            return False

        def start(self) -> ManagedProcess:
            return self

        def kill_group(self) -> None:
            return None

    svc = Watched(Dead("svc", ["true"], Path("/nonexistent/svc.log")), ready=lambda: False)
    sup = Supervisor(
        lines.append, [svc], [], Path("/"), backoff_first=1, backoff_max=4, max_crashes=9,
        clock=lambda: now[0],
    )  # fmt: skip
    delays = []
    for _ in range(5):
        assert sup.step() is None
        assert svc.restart_at is not None
        delays.append(svc.restart_at - now[0])
        now[0] = svc.restart_at
        sup.step()  # restarts it (and it is dead again at once)
    assert delays == [1, 2, 4, 4, 4]


def test_a_dead_server_stops_the_stack_and_says_why(tmp_path: Path) -> None:
    lines: list[str] = []
    server = Server("nats", _proc(tmp_path, "nats-server", "raise SystemExit(1)"), "", 0)
    server.process.proc.wait(10)  # type: ignore[union-attr]
    sup = Supervisor(lines.append, [], [server], tmp_path)
    assert sup.step() == 1
    assert lines[0].startswith("nats (a server make run started) exited with code 1")
    assert "stopping the stack" in lines[0]


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(3) == "code 3"
