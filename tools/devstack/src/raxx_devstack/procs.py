"""A child process with a log file, a readiness probe and a clean stop."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from raxx_devstack.ports import port_in_use


class StartError(RuntimeError):
    """A server did not become ready; the message names it and points at its log."""


def venv_bin(name: str) -> str:
    """Path of an executable installed into this interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise StartError(f"{name} is not installed in {Path(sys.executable).parent}; run `make setup`")


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    """A probe that succeeds once host:port accepts connections."""

    return lambda: port_in_use(port, host)


def http_ready(url: str) -> Callable[[], bool]:
    """A probe that succeeds once `url` answers 2xx."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).is_success
        except httpx.HTTPError:
            return False

    return probe


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the process that started us dies, even by SIGKILL.

    Children run in their own session (a terminal's Ctrl-C reaches only make run, which stops
    them in order); this makes sure an abrupt end of make run or a test never orphans a server.
    """
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Loaded in the parent (start() calls it first): nothing between fork and exec may spawn
    # processes, as find_library can.
    if sys.platform != "linux":
        return None
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return None


class ManagedProcess:
    """One server or service we started: logs to a file, stopped by process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        private_log: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.user = user
        self.private_log = private_log
        """The log holds secrets (OpenBao's dev banner): 0600 from creation, in a 0700 dir."""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process (own process group, output to the log file)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _libc()
        mode = 0o600 if self.private_log else 0o644
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        if self.private_log:
            os.fchmod(fd, mode)  # a log left by an older run: nothing new goes in while it is wide
        log = os.fdopen(fd, "ab")
        self.proc = subprocess.Popen(  # noqa: S603 - argv is built by us, never from user input
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> None:
        """Block until `probe()` is true; raise StartError (with the log tail) otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(f"{self.name} exited early; log:\n{self.log_tail()}")
            if probe():
                return
            time.sleep(0.1)
        raise StartError(f"{self.name} not ready after {timeout:.0f}s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill_group(self) -> None:
        """SIGKILL whatever is left in the process group of a process that has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL at once (tests of crash recovery)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
