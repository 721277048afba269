"""Credential issuance under concurrent load: `issued_per_s` and `p99_ms` -> .bench/tier-gate.json.

Starts its own OpenBao (dev), PostgreSQL (durable: fsync on), an operator-mode nats-server (from
`tier_gate init`) and tier-gate as a separate process (`python -m tier_gate`, TG_ENV=dev), all on
free ports under a temp dir. Then drives `POST /v1/tokens` from this process over keep-alive
HTTP/1.1 connections (a minimal asyncio client, so the load generator costs little CPU), with
distinct users (unknown users are free; a share get pro/pro_plus via the dev route first).

Usage: uv run python scripts/bench_tier_gate.py [--seconds 10] [--concurrency 16] [--users 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from raxx_contracts import default_policy
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from raxx_devstack.procs import ManagedProcess, http_ready
from tier_gate import identity, keys
from tier_gate.adapters.vault import Vault
from tier_gate.bootstrap import InitOptions, run_init
from tier_gate.settings import VaultSettings

ROOT = Path(__file__).resolve().parent.parent


async def _conn_worker(
    port: int, tokens: list[str], stop_at: float, lat: list[float], times: list[float],
    errors: list[str],
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            tok = random.choice(tokens)
            req = (
                f"POST /v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(req)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            t1 = time.perf_counter()
            if b" 200 " not in status:
                errors.append(status.decode().strip())
                continue
            lat.append(t1 - t0)
            times.append(t1)
    finally:
        writer.close()


async def _prepare(addr: str, token: str, users: int, tg_url: str) -> list[str]:
    vault = Vault(VaultSettings(addr=addr, token=token))
    key = keys.okp_from_secret(await vault.read(keys.PATH_DEV_IDENTITY), "dev")
    names = [f"bench-{i}" for i in range(users)]
    async with httpx.AsyncClient(base_url=tg_url, timeout=10) as client:
        for name in names[: users // 5]:  # 20% paying users recorded in PostgreSQL
            tier = random.choice(["pro", "pro_plus"])
            (
                await client.post("/dev/identity", json={"user": name, "tier": tier})
            ).raise_for_status()
    return [
        identity.dev_identity_token(
            key, user_id=n, tier="?", issuer="raxx-identity", audience="raxx"
        )
        for n in names
    ]


async def _run(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    bao = servers.start_openbao(tmp / "bao")
    pg = servers.start_postgres(tmp / "pg", durable=True)
    started = [bao, pg]
    tg_proc: ManagedProcess | None = None
    try:
        vs = VaultSettings(addr=bao.url, token=bao.extra["token"])
        nats_port = free_port()
        out = tmp / "nats"
        init = await run_init(
            Vault(vs), default_policy(),
            InitOptions(dev=True, out=out, nats_listen=f"127.0.0.1:{nats_port}"),
        )  # fmt: skip
        nats = servers.start_nats(tmp / "nats-srv", port=nats_port, config=init.config_path,
                                  jetstream=False)  # fmt: skip
        started.append(nats)
        http_port = free_port()
        env = {
            "TG_ENV": "dev", "TG_NATS_URL": nats.url, "TG_NATS_CREDS": str(out / "tier-gate.creds"),
            "TG_NATS_SYS_CREDS": str(out / "tier-gate-sys.creds"), "TG_DATABASE_URL": pg.url,
            "TG_VAULT__ADDR": bao.url, "TG_VAULT__TOKEN": bao.extra["token"],
            "TG_HTTP_PORT": str(http_port), "TG_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        prof = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
        tg_proc = ManagedProcess(
            "tier-gate", [sys.executable, *prof, "-m", "tier_gate"], tmp / "tier-gate.log", env=env
        ).start()
        tg_url = f"http://127.0.0.1:{http_port}"
        tg_proc.wait_ready(http_ready(f"{tg_url}/readyz"), timeout=60)
        tokens = await _prepare(bao.url, bao.extra["token"], args.users, tg_url)

        async def phase(seconds: float) -> tuple[list[float], list[float], list[str], float]:
            lat: list[float] = []
            times: list[float] = []
            errors: list[str] = []
            t0 = time.perf_counter()
            stop_at = t0 + seconds
            await asyncio.gather(*(
                _conn_worker(http_port, tokens, stop_at, lat, times, errors)
                for _ in range(args.concurrency)
            ))  # fmt: skip
            return lat, [t - t0 for t in times], errors, time.perf_counter() - t0

        await phase(2.0)  # warm-up: caches, pool, JIT-less Python paths
        lat, times, errors, elapsed = await phase(args.seconds)
        lat_ms = sorted(x * 1000 for x in lat)
        result = {
            "issued_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(statistics.median(lat_ms), 2),
            "p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 2),
            "max_ms": round(lat_ms[-1], 2),
            "issued": len(lat),
            "errors": len(errors),
            "concurrency": args.concurrency,
            "seconds": round(elapsed, 2),
            "users": args.users,
        }
        _chart(lat_ms, times, result)
        return result
    finally:
        if tg_proc is not None:
            tg_proc.stop()
        servers.stop_all(started)


def _chart(lat_ms: list[float], times: list[float], result: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    buckets = [0] * (int(max(times)) + 1)
    for t in times:
        buckets[int(t)] += 1
    ax1.bar(range(len(buckets)), buckets)
    ax1.axhline(500, color="red", linestyle="--", label="target 500/s")
    ax1.set_xlabel("second")
    ax1.set_ylabel("credentials issued")
    ax1.set_title(f"throughput ({result['issued_per_s']}/s)")
    ax1.legend()
    ax2.hist(lat_ms, bins=60)
    ax2.axvline(result["p99_ms"], color="red", linestyle="--", label=f"p99 {result['p99_ms']} ms")
    ax2.set_xlabel("latency ms")
    ax2.set_title(f"issuance latency, {result['concurrency']} concurrent")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(ROOT / ".bench" / "tier-gate.png", dpi=100)


def main() -> int:
    """Run the benchmark and write .bench/tier-gate.json + .png."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--profile", type=Path, default=None, help="cProfile tier-gate into this file")
    args = p.parse_args()
    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-tg-") as tmp:
        result = asyncio.run(_run(args, Path(tmp)))
    (ROOT / ".bench" / "tier-gate.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k}: {v}")
    ok = result["issued_per_s"] >= 500 and result["p99_ms"] <= 50 and not result["errors"]
    print("target (>=500/s, p99<=50 ms):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
