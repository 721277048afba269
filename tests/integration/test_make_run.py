"""`make run` as a new user meets it: READY, every service answers, data flows, Ctrl-C stops all.

Runs the real stack (`python -m raxx_devstack run`) in a temporary root with every default port
shifted by `RAXX_PORT_OFFSET`, so it never collides with a developer's own `make run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg
from raxx_contracts import Quote, decode
from raxx_devstack.ports import port_in_use
from raxx_devstack.stack import DEFAULT_PORTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DELAY_SECONDS = 4
HINT = "[make run] try (in another terminal): "
REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningStack:
    proc: subprocess.Popen[str]
    root: Path
    ports: dict[str, int]
    offset: int
    lines: list[str]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_offset() -> int:
    # Every shifted port stays below the ephemeral range (32768+) that port-0 servers of other
    # tests and outgoing connections draw from, and must be bindable right now.
    top = max(DEFAULT_PORTS.values())
    for _ in range(100):
        offset = random.randrange(1000, 32000 - top, 10)
        if all(_bindable(p + offset) for p in DEFAULT_PORTS.values()):
            return offset
    raise RuntimeError("no free block of ports for a second stack")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    if proc.stdout is not None:
        proc.stdout.close()


def _start(root: Path, offset: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "RAXX_PORT_OFFSET": str(offset),
        "MDH_DELAY_SECONDS": str(DELAY_SECONDS),
    }
    for var in ("NATS_URL", "DATABASE_URL", "VAULT_ADDR", "ALPACA_DATA_URL"):
        env.pop(var, None)
    return subprocess.Popen(
        [sys.executable, "-m", "raxx_devstack", "run", "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    root = tmp_path_factory.mktemp("make-run")
    offset = _pick_offset()
    proc = _start(root, offset)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.strip() == "READY":
            break
    if not lines or lines[-1] != "READY":
        _stop(proc)
        pytest.fail("make run did not print READY:\n" + "\n".join(lines))
    while not any(line.startswith(HINT) for line in lines):  # the hints follow READY at once
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
    ports = {name: port + offset for name, port in DEFAULT_PORTS.items()}
    running = RunningStack(proc, root, ports, offset, lines)
    yield running
    _stop(proc)


SERVICES = ("market-data-hub", "tier-gate", "broker-handoff", "eod-settler", "md-replay")


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_ready_and_serves_metrics_and_docs(
    stack: RunningStack, service: str
) -> None:
    base = stack.url(service)
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text
    assert httpx.get(f"{base}/docs").status_code == 200


def test_a_second_make_run_says_so_plainly(stack: RunningStack) -> None:
    second = _start(stack.root, stack.offset)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert "already running" in out
    assert httpx.get(f"{stack.url('tier-gate')}/readyz").status_code == 200


def _tail(stack: RunningStack, tier: str, seconds: float) -> list[str]:
    cmd = [
        sys.executable, "-m", "raxx_md_client", "tail", "--tier", tier, "AAPL",
        "--tier-gate", stack.url("tier-gate"), "--nats", f"nats://127.0.0.1:{stack.ports['nats']}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return [line for line in out.splitlines() if "AAPL" in line]


def test_raxx_md_tail_prints_real_time_quotes_for_pro(stack: RunningStack) -> None:
    lines = _tail(stack, "pro", 15)
    assert lines, "no quote printed within 15 s"
    assert all("[rt]" in line for line in lines)


def test_raxx_md_tail_prints_delayed_quotes_for_free(stack: RunningStack) -> None:
    lines = _tail(stack, "free", 15 + DELAY_SECONDS)
    assert lines, "no delayed quote printed"
    assert all("[delayed]" in line for line in lines)


async def test_delayed_path_is_never_early_end_to_end(stack: RunningStack) -> None:
    creds = stack.root / ".run" / "nats" / "dev-admin.creds"
    nc = await nats.connect(f"nats://127.0.0.1:{stack.ports['nats']}", user_credentials=str(creds))
    early: list[float] = []
    seen: list[Quote] = []
    enough = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        quote = decode(Quote, msg.data)
        seen.append(quote)
        lateness = time.time() - quote.timestamp.timestamp()
        if lateness < DELAY_SECONDS:
            early.append(lateness)
        if len(seen) >= 20:
            enough.set()

    # a pro consumer keeps interest in MSFT alive while we watch the delayed path
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raxx_md_client", "tail", "--tier", "pro", "MSFT",
        "--tier-gate", stack.url("tier-gate"), "--nats", f"nats://127.0.0.1:{stack.ports['nats']}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await nc.subscribe("md.delayed.stocks.quotes.>", cb=on_msg)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), DELAY_SECONDS + 20)
    finally:
        tail.send_signal(signal.SIGINT)
        await tail.wait()
        await nc.close()
    assert seen, "nothing arrived on the delayed path"
    assert not early, f"{len(early)} delayed messages arrived early: {early[:5]}"


def test_pro_plus_user_connects_a_broker_account_and_orders_once(stack: RunningStack) -> None:
    ident = httpx.post(
        f"{stack.url('tier-gate')}/dev/identity", json={"user": "e2e-trader", "tier": "pro_plus"}
    ).json()["token"]
    auth = {"Authorization": f"Bearer {ident}"}
    bh = stack.url("broker-handoff")
    deadline = time.monotonic() + 10  # broker-handoff learns the tier from billing.tier.changed
    while True:
        connect = httpx.get(
            f"{bh}/v1/broker/alpaca/connect",
            params={"consent": "true", "env": "paper"},
            headers=auth,
        )
        if connect.status_code == 302 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert connect.status_code == 302, connect.text
    authorize = httpx.get(connect.headers["location"])  # the simulated provider approves at once
    assert authorize.status_code == 302, authorize.text
    # The callback completes only in the client that started the flow: it carries the binding
    # cookie /connect set (a browser does that by itself; a Secure cookie is sent here by hand).
    binding = "; ".join(f"{k}={v}" for k, v in connect.cookies.items())
    assert binding.startswith("bh_flow_"), connect.headers
    callback = httpx.get(authorize.headers["location"], headers={"Cookie": binding})
    assert callback.status_code < 400, callback.text
    assert httpx.get(f"{bh}/v1/broker/alpaca", headers=auth).json()["connected"] is True
    assert httpx.get(f"{bh}/v1/broker/alpaca/account", headers=auth).status_code == 200
    order = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    key = {**auth, "Idempotency-Key": "e2e-order-1"}
    first = httpx.post(f"{bh}/v1/broker/alpaca/orders", json=order, headers=key)
    again = httpx.post(f"{bh}/v1/broker/alpaca/orders", json=order, headers=key)
    assert first.status_code == 201, first.text
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert httpx.delete(f"{bh}/v1/broker/alpaca", headers=auth).status_code < 300
    assert httpx.get(f"{bh}/v1/broker/alpaca", headers=auth).json()["connected"] is False


def test_settle_cli_settles_the_last_session_through_the_hub(stack: RunningStack) -> None:
    sim = f"http://127.0.0.1:{stack.ports['alpaca-sim']}"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 8 * 86400))
    calendar = httpx.get(
        f"{sim}/v2/calendar",
        params={"start": week_ago, "end": today},
        headers={"APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"},
    ).json()
    date = next(d["date"] for d in reversed(calendar) if d["date"] < today)
    env_file = stack.root / ".run" / "env" / "eod-settler.env"
    run = subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-c",
         f". {env_file} && exec {sys.executable} -m eod_settler run --date {date}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    settles = httpx.get(f"{stack.url('eod-settler')}/v1/settles/{date}").json()
    assert settles["count"] >= 5
    assert {s["symbol"] for s in settles["settles"]} >= {"AAPL", "BRK.B"}
    # the settler has no Alpaca key of its own: it went through the hub's passthrough
    env_text = env_file.read_text()
    assert "/alpaca" in env_text
    metrics = httpx.get(f"{stack.url('market-data-hub')}/metrics").text
    # closing auctions first (the official close), daily bars for symbols without one
    closes = [
        line for line in metrics.splitlines()
        if line.startswith("mdh_passthrough_requests_total{")
        and ("/v2/stocks/auctions" in line or "/v2/stocks/bars" in line)
    ]  # fmt: skip
    assert any('outcome="ok"' in line and not line.endswith(" 0.0") for line in closes), closes
    assert {s["source"] for s in settles["settles"]} <= {"auction", "daily_bar"}


def _fresh_machine_env(**extra: str) -> dict[str, str]:
    """A shell as on a fresh machine: uv only in `.tools/` (not on PATH), no venv activated."""
    venv_bin = Path(sys.executable).parent
    path = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "uv").exists() and Path(d).resolve() != venv_bin.resolve()
    ]  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env = {k: v for k, v in env.items() if not k.startswith("RAXX_MD_")} | extra
    env["PATH"] = os.pathsep.join(path)
    assert shutil.which("uv", path=env["PATH"]) is None
    assert shutil.which("raxx-md", path=env["PATH"]) is None
    return env


def _run_as_printed(
    command: str, env: dict[str, str], cwd: Path, seconds: float
) -> tuple[int, str, str]:
    """Run `command` with bash as a person would paste it; Ctrl-C after `seconds` if it runs on."""
    proc = subprocess.Popen(
        [shutil.which("bash") or "/bin/bash", "-c", command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def test_the_printed_tail_command_works_as_printed_without_uv(
    stack: RunningStack, tmp_path: Path
) -> None:
    hint = next((line[len(HINT) :] for line in stack.lines if line.startswith(HINT)), None)
    assert hint is not None, stack.lines
    assert "uv run" not in hint
    # from a directory that is not the checkout, with neither uv nor the venv on PATH
    rc, out, err = _run_as_printed(hint, _fresh_machine_env(), tmp_path, 15 + DELAY_SECONDS)
    assert rc == 0, err
    quotes = [line for line in out.splitlines() if "AAPL" in line]
    assert quotes, f"nothing printed by {hint!r}: {err}"
    assert all("[delayed]" in line for line in quotes)


def _readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```sh\n")[1:]]


def _shifted(command: str, stack: RunningStack) -> str:
    # The README names the default ports; this stack runs shifted by RAXX_PORT_OFFSET.
    for name, port in DEFAULT_PORTS.items():
        command = command.replace(f"localhost:{port}", f"localhost:{stack.ports[name]}")
    return command


def test_every_command_the_readme_suggests_works_as_printed_without_uv(
    stack: RunningStack,
) -> None:
    blocks = _readme_blocks()
    # the first block is `make run` / `make test` themselves; the others are run here, each
    # command as printed from the checkout's root (this stack's root, with the workspace's .venv)
    assert [line.split()[:2] for line in blocks[0].splitlines()] == [
        ["make", "run"],
        ["make", "test"],
    ]
    tries, script = blocks[1:]  # a new block must be added to this test
    venv = stack.root / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix))
    env = _fresh_machine_env(
        RAXX_MD_TIER_GATE=stack.url("tier-gate"),
        RAXX_MD_NATS=f"nats://127.0.0.1:{stack.ports['nats']}",
    )
    for command in tries.splitlines():
        tier = command.split("--tier ")[1].split()[0]
        rc, out, err = _run_as_printed(command, env, stack.root, 15 + DELAY_SECONDS)
        assert rc == 0, f"{command}: {err}"
        quotes = [line for line in out.splitlines() if "AAPL" in line]
        assert quotes, f"nothing printed by {command!r}: {err}"
        assert all(("[delayed]" if tier == "free" else "[rt]") in line for line in quotes)
    rc, out, err = _run_as_printed(
        "set -euo pipefail\n" + _shifted(script, stack), env, stack.root, 150
    )
    assert rc == 0, out + err
    assert '"AAPL"' in out  # the hub's quote (and the settles)
    assert '"settles"' in out  # the settler's answer


def test_ctrl_c_stops_everything_it_started(stack: RunningStack) -> None:
    # As a terminal does (and uv forwarding it again): Ctrl-C twice in quick succession.
    os.killpg(stack.proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(stack.proc.pid, signal.SIGINT)
    out, _ = stack.proc.communicate(timeout=90)
    assert stack.proc.returncode == 0, out
    time.sleep(1)
    still = [name for name, port in stack.ports.items() if port_in_use(port)]
    assert not still, f"still listening after Ctrl-C: {still}"
