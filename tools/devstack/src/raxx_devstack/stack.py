"""`make run`: the whole system on one machine, using configured servers or starting its own."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psycopg
from psycopg import sql

from raxx_devstack import servers
from raxx_devstack.files import write_private
from raxx_devstack.ports import port_in_use
from raxx_devstack.procs import ManagedProcess, StartError, http_ready
from raxx_devstack.supervise import Supervisor, Watched

DEFAULT_PORTS = {
    "nats": 14222, "postgres": 15432, "openbao": 18200, "alpaca-sim": 18700,
    "market-data-hub": 8081, "tier-gate": 8082, "broker-handoff": 8083, "eod-settler": 8084,
    "md-replay": 8085,
}  # fmt: skip


def ports_from_env(env: Mapping[str, str]) -> dict[str, int]:
    """Default ports, shifted by `RAXX_PORT_OFFSET` (lets a test run a second stack)."""
    offset = int(env.get("RAXX_PORT_OFFSET", "0") or 0)
    return {name: port + offset for name, port in DEFAULT_PORTS.items()}


ALPACA_KEY_PATH = "raxx/alpaca/market-data"
HUB_SERVICE_CLIENTS_PATH = "raxx/market-data-hub/service-clients"
SETTLER_HUB_CLIENT_PATH = "raxx/eod-settler/hub-client"
SETTLER_CLIENT_ID = "eod-settler"
DATABASES = ("tier_gate", "broker_handoff", "eod_settler")
PLANS = ("basic", "algo_trader_plus")
"""Values of `ALPACA_PLAN` (INTERFACES.md, "Alpaca plan")."""


class StackError(RuntimeError):
    """Something the user must fix; the message says what."""


@dataclass
class Service:
    """One of our services: how to start it and where it answers /readyz."""

    name: str
    module: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Stack:
    """What `make run` started (and must stop) and how everything is reached."""

    root: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    started: list[servers.Server] = field(default_factory=list)
    services: list[ManagedProcess] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        """State of this run (`.run/`)."""
        return self.root / ".run"

    def say(self, text: str) -> None:
        """A progress line for the person at the terminal."""
        print(f"[make run] {text}", flush=True)  # noqa: T201 - this is the terminal UI

    def stop(self) -> None:
        """Stop only what we started, services first."""
        for proc in reversed(self.services):
            with contextlib.suppress(Exception):
                proc.stop()
        servers.stop_all(self.started)


@contextlib.contextmanager
def single_instance(run_dir: Path) -> Iterator[None]:
    """Refuse a second `make run` in the same checkout with a plain message."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / "make-run.lock"
    handle: IO[str] = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise StackError(
            f"`make run` is already running in this checkout (pid {pid}). Use that one, or stop "
            "it with Ctrl-C in its terminal first."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def _require_free(port: int, what: str, variable: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} (default for {what}) is already taken by another program. Free it, "
            f"or point `make run` at an existing server with {variable}."
        )


def _vault_put(addr: str, token: str, path: str, data: Mapping[str, str]) -> None:
    r = httpx.post(
        f"{addr}/v1/secret/data/{path}", headers={"X-Vault-Token": token}, json={"data": data}
    )
    if not r.is_success:
        raise StackError(f"could not write {path} to OpenBao at {addr}: {r.status_code} {r.text}")


def _ensure_databases(admin_dsn: str) -> dict[str, str]:
    dsns: dict[str, str] = {}
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for db in DATABASES:
            exists = conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            dsns[db] = psycopg.conninfo.make_conninfo(admin_dsn, dbname=db)
    return dsns


def _python_module(
    stack: Stack, args: list[str], env: Mapping[str, str], what: str, stdin: str | None = None
) -> str:
    r = subprocess.run(  # noqa: S603 - argv built here
        [sys.executable, "-m", *args],
        input=stdin,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=stack.root,
    )
    if r.returncode != 0:
        raise StackError(f"{what} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def _service_exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def bring_up(stack: Stack) -> list[Service]:
    """Start or reach every server, bootstrap secrets and keys; return the services to run."""
    env, run, ports = stack.env, stack.run_dir, stack.ports
    pg_port, bao_port, sim_port, nats_port = (
        ports["postgres"],
        ports["openbao"],
        ports["alpaca-sim"],
        ports["nats"],
    )
    hub, tg, bh, eod = (
        ports["market-data-hub"], ports["tier-gate"], ports["broker-handoff"], ports["eod-settler"]
    )  # fmt: skip
    callback = f"http://127.0.0.1:{bh}/v1/broker/alpaca/callback"
    # PostgreSQL
    if dsn := env.get("DATABASE_URL"):
        stack.say(f"PostgreSQL: using DATABASE_URL ({dsn.split('@')[-1]})")
    else:
        _require_free(pg_port, "PostgreSQL", "DATABASE_URL")
        stack.say(f"PostgreSQL: starting on 127.0.0.1:{pg_port} (data in .run/postgres)")
        pg = servers.start_postgres(run / "postgres", port=pg_port)
        stack.started.append(pg)
        dsn = pg.url
    dsns = _ensure_databases(dsn)
    # OpenBao
    if vault_addr := env.get("VAULT_ADDR"):
        vault_token = env.get("VAULT_TOKEN", "")
        stack.say(f"OpenBao: using VAULT_ADDR {vault_addr}")
    else:
        _require_free(bao_port, "OpenBao", "VAULT_ADDR")
        stack.say(f"OpenBao: starting a dev server on 127.0.0.1:{bao_port} (in memory)")
        bao = servers.start_openbao(run / "openbao", port=bao_port)
        stack.started.append(bao)
        vault_addr, vault_token = bao.url, bao.extra["token"]
        write_private(run / "openbao" / "root-token", vault_token)
    # ALPACA_PLAN (basic | algo_trader_plus) goes to the hub and the settler, and the simulator
    # enforces the same plan; unset: the services' default (basic) and a sim without caps
    plan = env.get("ALPACA_PLAN", "")
    if plan and plan not in PLANS:
        raise StackError(f"ALPACA_PLAN must be one of {', '.join(PLANS)}, not {plan!r}")
    plan_env = {"ALPACA_PLAN": plan} if plan else {}
    # Alpaca (the simulator unless real endpoints are configured)
    if env.get("ALPACA_DATA_URL"):
        data_url = env["ALPACA_DATA_URL"]
        stream_url = env.get("ALPACA_STREAM_URL", "wss://stream.data.alpaca.markets")
        trading_url = env.get("ALPACA_TRADING_URL", "https://paper-api.alpaca.markets")
        key_id = env.get("ALPACA_API_KEY_ID", "")
        secret = env.get("ALPACA_API_SECRET_KEY", "")
        oauth_id = env.get("ALPACA_OAUTH_CLIENT_ID", "")
        oauth_secret = env.get("ALPACA_OAUTH_CLIENT_SECRET", "")
        stack.say(f"Alpaca: using ALPACA_DATA_URL {data_url}")
    else:
        _require_free(sim_port, "alpaca-sim", "ALPACA_DATA_URL")
        stack.say(f"alpaca-sim: starting on 127.0.0.1:{sim_port}")
        sim_env = {"SIM_OAUTH_REDIRECT_URIS": callback}
        if plan:  # the simulated key has the plan the services are told about
            sim_env["SIM_PLAN"] = plan
        sim = servers.start_alpaca_sim(run / "alpaca-sim", port=sim_port, env=sim_env)
        stack.started.append(sim)
        data_url = trading_url = sim.url
        stream_url = sim.extra["ws_url"]
        key_id, secret = "sim-key", "sim-secret"
        oauth_id, oauth_secret = "sim-client", "sim-client-secret"
    _vault_put(vault_addr, vault_token, ALPACA_KEY_PATH, {"key_id": key_id, "secret_key": secret})
    # eod-settler reaches Alpaca only through the hub's /alpaca passthrough, as in the cluster:
    # a fresh service-client secret each run; the hub keeps only its sha256.
    client_secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(client_secret.encode()).hexdigest()
    _vault_put(vault_addr, vault_token, HUB_SERVICE_CLIENTS_PATH, {SETTLER_CLIENT_ID: digest})
    _vault_put(
        vault_addr, vault_token, SETTLER_HUB_CLIENT_PATH,
        {"key_id": SETTLER_CLIENT_ID, "secret_key": client_secret},
    )  # fmt: skip
    hub_alpaca = f"http://127.0.0.1:{hub}/alpaca"
    # NATS (operator/JWT mode, keys made by tier-gate's init)
    nats_dir = run / "nats"
    creds: dict[str, str] = {}
    bh_login: dict[str, str] = {}
    vault_env = {"VAULT__ADDR": vault_addr, "VAULT__TOKEN": vault_token}
    if nats_url := env.get("NATS_URL"):
        stack.say(f"NATS: using NATS_URL {nats_url}")
        if env.get("NATS_CREDS"):
            creds = dict.fromkeys(
                ("hub", "settler", "broker-handoff", "tier-gate", "md-replay"), env["NATS_CREDS"]
            )
    else:
        _require_free(nats_port, "NATS", "NATS_URL")
        if not _service_exists("tier_gate"):
            raise StackError("tier-gate is not installed: it creates the NATS operator and keys")
        stack.say("NATS: creating operator, accounts and keys (python -m tier_gate init)")
        tg_env = {f"TG_{k}": v for k, v in vault_env.items()}
        tg_env["TG_DATABASE_URL"] = dsns["tier_gate"]
        _python_module(
            stack,
            ["tier_gate", "init", "--dev", "--out", str(nats_dir),
             "--nats-listen", f"127.0.0.1:{nats_port}", "--js-dir", str(nats_dir / "js")],
            tg_env,
            "tier-gate init",
        )  # fmt: skip
        stack.say(f"NATS: starting nats-server on 127.0.0.1:{nats_port} (operator mode)")
        nats = servers.start_nats(
            nats_dir, port=nats_port, config=nats_dir / "nats-server.conf", jetstream=False
        )
        stack.started.append(nats)
        nats_url = nats.url
        creds = {
            n: str(nats_dir / f"{n}.creds")
            for n in ("hub", "hub-responder", "settler", "broker-handoff", "md-replay")
        }
        creds["tier-gate"] = str(nats_dir / "tier-gate.creds")
        creds["tier-gate-sys"] = str(nats_dir / "tier-gate-sys.creds")
    if _service_exists("broker_handoff"):
        bh_env = {f"BH_{k}": v for k, v in vault_env.items()}
        init_args = ["broker_handoff", "init-vault", "--secret-id"]
        if oauth_secret:  # the OAuth client secret goes to Vault on stdin, never argv or env
            init_args.append("--oauth-client-secret-stdin")
        out = _python_module(
            stack, init_args, bh_env, "broker-handoff init-vault", stdin=oauth_secret + "\n"
        )
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        # broker-handoff logs in with its own AppRole, so its policy is really exercised.
        bh_login = {"VAULT__AUTH": "approle", "VAULT__ROLE_ID": values.get("role_id", "")}
        bh_login["VAULT__SECRET_ID"] = values.get("secret_id", "")
        if token := values.get("admin_token"):
            write_private(run / "broker-handoff-admin-token", token + "\n")

    def common(
        prefix: str, creds_name: str, port: int, vault_login: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Settings every service gets; `vault_login` replaces the root-token login."""
        login = vault_login or {"VAULT__TOKEN": vault_env["VAULT__TOKEN"]}
        out = {
            f"{prefix}_{k}": v
            for k, v in {"VAULT__ADDR": vault_env["VAULT__ADDR"], **login}.items()
        }
        out |= {f"{prefix}_NATS_URL": nats_url, f"{prefix}_ENV": "dev"}
        out |= {f"{prefix}_HTTP_HOST": "127.0.0.1", f"{prefix}_HTTP_PORT": str(port)}
        if creds_name in creds:
            out[f"{prefix}_NATS_CREDS"] = creds[creds_name]
        return out

    identity_jwks = f"http://127.0.0.1:{tg}/dev/identity/jwks.json"
    delay = env.get("MDH_DELAY_SECONDS", "900")
    candidates = [
        Service("tier-gate", "tier_gate", tg, common("TG", "tier-gate", tg) | {
            "TG_DATABASE_URL": dsns["tier_gate"],
        } | ({"TG_NATS_SYS_CREDS": creds["tier-gate-sys"]} if "tier-gate-sys" in creds else {})),
        Service("market-data-hub", "market_data_hub", hub, common("MDH", "hub", hub) | {
            "MDH_ALPACA_DATA_URL": data_url, "MDH_ALPACA_STREAM_URL": stream_url,
            "MDH_ALPACA_TRADING_URL": trading_url,
            "MDH_VAULT__SERVICE_CLIENTS_PATH": HUB_SERVICE_CLIENTS_PATH,
            "MDH_DELAY_SECONDS": delay,
            "MDH_TIER_GATE_JWKS_URL": f"http://127.0.0.1:{tg}/.well-known/jwks.json",
        } | plan_env | ({"MDH_NATS_RESPONDER_CREDS": creds["hub-responder"]}
             if "hub-responder" in creds else {})),
        Service("eod-settler", "eod_settler", eod, common("EOD", "settler", eod) | {
            "EOD_DATABASE_URL": dsns["eod_settler"], "EOD_ALPACA_DATA_URL": hub_alpaca,
            "EOD_ALPACA_TRADING_URL": hub_alpaca, "EOD_VAULT__PATH": SETTLER_HUB_CLIENT_PATH,
            "EOD_SYMBOLS": env.get("EOD_SYMBOLS", "AAPL,MSFT,SPY,QQQ,BRK.B"),
        } | plan_env),
        # md-replay: the session archive in the MD_ARCHIVE object store (MDR_ARCHIVE_URL: any
        # fsspec URL instead) and replays; the same delay as the hub's delayed path.
        Service("md-replay", "md_replay", ports["md-replay"], common(
            "MDR", "md-replay", ports["md-replay"]) | {
            "MDR_DELAY_SECONDS": delay, "MDR_ARCHIVE_URL": env.get("MDR_ARCHIVE_URL", ""),
        }),
        # broker-handoff logs in with its own AppRole, so its Vault policy is really exercised.
        Service("broker-handoff", "broker_handoff", bh, common(
            "BH", "broker-handoff", bh, bh_login) | {
            "BH_DATABASE_URL": dsns["broker_handoff"], "BH_ALPACA_OAUTH_URL": trading_url,
            "BH_ALPACA_TRADING_URL": trading_url, "BH_IDENTITY_JWKS_URL": identity_jwks,
            "BH_REDIRECT_URI": callback, "BH_OAUTH_CLIENT_ID": oauth_id,
            "BH_ALLOWED_REDIRECT_URIS": json.dumps([callback]),
        }),
    ]  # fmt: skip
    return [s for s in candidates if _service_exists(s.module)]


def start_services(stack: Stack, services: list[Service]) -> None:
    """Start each service and wait for its /readyz."""
    for svc in services:
        _require_free(svc.port, svc.name, f"{svc.name}'s *_HTTP_PORT")
        stack.say(f"{svc.name}: starting on http://127.0.0.1:{svc.port}")
        proc = ManagedProcess(
            svc.name,
            [sys.executable, "-m", svc.module],
            stack.run_dir / "logs" / f"{svc.name}.log",
            env=svc.env,
            cwd=stack.root,
        ).start()
        stack.services.append(proc)
    for svc, proc in zip(services, stack.services, strict=True):
        proc.wait_ready(http_ready(f"http://127.0.0.1:{svc.port}/readyz"), timeout=60)
        stack.say(f"{svc.name}: ready")


def supervisor(stack: Stack, services: list[Service]) -> Supervisor:
    """What keeps the stack up after READY (see `raxx_devstack.supervise`)."""
    watched = [
        Watched(proc, http_ready(f"http://127.0.0.1:{svc.port}/readyz"))
        for svc, proc in zip(services, stack.services, strict=True)
    ]
    return Supervisor(stack.say, watched, stack.started, stack.root)


RAXX_MD_DEFAULTS = {"--tier-gate": "http://127.0.0.1:8082", "--nats": "nats://127.0.0.1:14222"}


def tail_hint(services: list[Service]) -> str:
    """The `raxx-md tail` command line for this stack, runnable as printed from any directory.

    It names the workspace's own executable by its absolute path: uv may live in `.tools/` and
    not be on PATH, and `uv run` would need the checkout as working directory anyway.
    """
    bindir = Path(sys.executable).parent
    md = bindir / "raxx-md"
    argv = [str(md)] if md.exists() else [sys.executable, "-m", "raxx_md_client"]
    argv += ["tail", "--tier", "free", "AAPL"]
    tg = next((s for s in services if s.name == "tier-gate"), None)
    if tg is not None:
        actual = {"--tier-gate": f"http://127.0.0.1:{tg.port}", "--nats": tg.env["TG_NATS_URL"]}
        for flag, value in actual.items():
            if value != RAXX_MD_DEFAULTS[flag]:
                argv += [flag, value]
    return shlex.join(argv)


def run(root: Path) -> int:
    """Entry point of `make run`."""
    stack = Stack(root=root, env=dict(os.environ), ports=ports_from_env(os.environ))

    def interrupted(signum: int, _frame: object) -> None:
        # A terminal's Ctrl-C reaches make, uv and us at once, and uv forwards it again: from
        # the first signal on, ignore repeats so none can cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        with single_instance(stack.run_dir):
            services = bring_up(stack)
            start_services(stack, services)
            _write_dev_env(stack, services)
            print("READY", flush=True)  # noqa: T201 - the one line scripts wait for
            stack.say(f"logs in {stack.run_dir / 'logs'}/; Ctrl-C stops everything")
            stack.say(f"try (in another terminal): {tail_hint(services)}")
            return supervisor(stack, services).run()
    except KeyboardInterrupt:
        stack.say("stopping what this run started ...")
        return 0
    except (StackError, StartError) as exc:
        stack.say(f"error: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def _write_dev_env(stack: Stack, services: list[Service]) -> None:
    """`.run/endpoints`, and `.run/env/<service>.env` so its CLI can reach this stack (dev)."""
    lines = [f"{svc.name}=http://127.0.0.1:{svc.port}" for svc in services]
    (stack.run_dir / "endpoints").write_text("\n".join(lines) + "\n")
    env_dir = stack.run_dir / "env"
    env_dir.mkdir(mode=0o700, exist_ok=True)
    for svc in services:
        text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in svc.env.items())
        write_private(env_dir / f"{svc.name}.env", text)
