"""`make run` keeps the stack up: a service killed with SIGKILL is restarted, nothing else moves.

The real stack (`python -m raxx_devstack run`, as `make run` starts it) on ports shifted by
`RAXX_PORT_OFFSET`; a service's process is killed as the kernel's OOM killer or an operator
would, and the supervisor must restart it with backoff, say so on the terminal, and bring it
back to a 200 on `/readyz` while every other service and server keeps its process. Then a
server `make run` started is killed: that stops the stack, with the reason, and nothing is left.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from raxx_devstack.ports import port_in_use
from raxx_devstack.stack import DEFAULT_PORTS

from tests.integration.test_make_run import RunningStack, _pick_offset, _start, _stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SERVICES = {
    "market-data-hub": "market_data_hub",
    "tier-gate": "tier_gate",
    "broker-handoff": "broker_handoff",
    "eod-settler": "eod_settler",
}
PREFIX = "[make run] "


class Terminal:
    """Everything `make run` prints, read continuously (as a terminal would)."""

    def __init__(self, stack: RunningStack) -> None:
        self.lines = stack.lines
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stack,), daemon=True)
        self._thread.start()

    def _read(self, stack: RunningStack) -> None:
        assert stack.proc.stdout is not None
        for line in stack.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if match(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("not printed; terminal:\n" + "\n".join(self.lines))
                self._changed.wait(left)


def _children(pid: int) -> dict[str, int]:
    """make run's direct children by what they run: service module or server binary."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != pid:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        if not words:  # a zombie: exited, not yet reaped
            continue
        module = words[words.index("-m") + 1] if "-m" in words else Path(words[0]).name
        found[module] = int(entry.name)
    return found


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, Terminal]]:
    root = tmp_path_factory.mktemp("make-run-faults")
    offset = _pick_offset()
    proc = _start(root, offset)
    ports = {name: port + offset for name, port in DEFAULT_PORTS.items()}
    stack = RunningStack(proc, root, ports, offset, [])
    terminal = Terminal(stack)
    try:
        terminal.wait_for(lambda line: line == "READY", 240)
    except AssertionError:
        _stop(proc)
        raise
    yield stack, terminal
    _stop(proc)


def _ready(stack: RunningStack, service: str) -> bool:
    try:
        return httpx.get(f"{stack.url(service)}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_killed_service_is_restarted_and_nothing_else_moves(
    running: tuple[RunningStack, Terminal],
) -> None:
    stack, terminal = running
    before = _children(stack.proc.pid)
    assert set(SERVICES.values()) <= set(before), before
    victim = "tier-gate"
    os.kill(before[SERVICES[victim]], signal.SIGKILL)
    killed_at = time.monotonic()
    # it is down, then back: /readyz answers 200 again
    deadline = killed_at + 120
    while time.monotonic() < deadline:
        if SERVICES[victim] in (now := _children(stack.proc.pid)) and _ready(stack, victim):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"{victim} not ready again in 120 s; terminal:\n" + "\n".join(terminal.lines))
    recovered = time.monotonic() - killed_at
    print(f"\n{victim}: SIGKILL to /readyz 200 in {recovered:.1f} s")  # noqa: T201 - the figure
    said = terminal.wait_for(lambda line: line.startswith(f"{PREFIX}{victim} exited"), 10)
    assert said == (
        f"{PREFIX}{victim} exited with signal SIGKILL; restarting it in 1 s "
        f"(restart 1 of at most 5 in a row). Its log: .run/logs/{victim}.log"
    )
    terminal.wait_for(lambda line: line.startswith(f"{PREFIX}{victim}: ready again, "), 30)
    assert stack.proc.poll() is None, "make run stopped"
    assert now[SERVICES[victim]] != before[SERVICES[victim]]
    unchanged = {k: v for k, v in before.items() if k != SERVICES[victim]}
    assert {k: now.get(k) for k in unchanged} == unchanged, "another process was restarted"
    for service in SERVICES:
        assert _ready(stack, service), f"{service} is not ready"
    # and it really serves again: an identity, then a credential
    ident = httpx.post(
        f"{stack.url(victim)}/dev/identity", json={"user": "after-restart", "tier": "free"}
    )
    assert ident.status_code == 200, ident.text
    token = httpx.post(
        f"{stack.url(victim)}/v1/tokens",
        headers={"Authorization": f"Bearer {ident.json()['token']}"},
    )
    assert token.status_code in (200, 201), token.text


def test_a_killed_server_stops_the_stack_with_the_reason(
    running: tuple[RunningStack, Terminal],
) -> None:
    stack, terminal = running
    os.kill(_children(stack.proc.pid)["alpaca_sim"], signal.SIGKILL)
    line = terminal.wait_for(lambda line: "(a server make run started) exited" in line, 30)
    assert line.startswith(f"{PREFIX}alpaca-sim (a server make run started) exited with signal")
    assert "stopping the stack" in line
    assert stack.proc.wait(90) == 1
    time.sleep(1)
    still = [name for name, port in stack.ports.items() if port_in_use(port)]
    assert not still, f"still listening after the stack stopped: {still}"
