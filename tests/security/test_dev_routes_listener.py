"""Dev identity routes never share the public API's listener.

`POST /dev/identity` mints any identity and sets any user's tier. In a cluster the ingress
reaches tier-gate's API port, so with `TG_DEV_HTTP_PORT` the dev routes answer only on that
separate listener (which the dev overlay's NetworkPolicy opens to broker-handoff alone) and are
404 on the API port, whatever the path or Host header; and a dev tier-gate whose API listens
beyond loopback refuses to start without that separate listener.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from raxx_devstack.ports import free_port

from tests.integration.fixtures_tier_gate import StackFactory, tier_gate_stack_factory

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack_factory"]


def _env(stack_settings: object, **extra: str) -> dict[str, str]:
    s = stack_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    env |= {
        "TG_ENV": "dev",
        "TG_NATS_URL": s.nats_url,  # type: ignore[attr-defined]
        "TG_NATS_CREDS": str(s.nats_creds),  # type: ignore[attr-defined]
        "TG_NATS_SYS_CREDS": str(s.nats_sys_creds),  # type: ignore[attr-defined]
        "TG_DATABASE_URL": s.database_url,  # type: ignore[attr-defined]
        "TG_VAULT__ADDR": s.vault.addr,  # type: ignore[attr-defined]
        "TG_VAULT__TOKEN": s.vault.token.get_secret_value(),  # type: ignore[attr-defined]
        "TG_BILLING_DURABLE": f"tg-{uuid.uuid4().hex[:8]}",
    }
    return env | extra


@pytest_asyncio.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


async def test_dev_routes_answer_only_on_the_dev_listener(
    tier_gate_stack_factory: StackFactory,
    processes: list[asyncio.subprocess.Process],
    tmp_path: Path,
) -> None:
    base_stack = await tier_gate_stack_factory()
    api_port, dev_port = free_port(), free_port()
    log_path = tmp_path / "tier-gate.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(  # the real process entry
            sys.executable, "-m", "tier_gate",
            env=_env(
                base_stack.settings, TG_HTTP_HOST="127.0.0.1", TG_HTTP_PORT=str(api_port),
                TG_DEV_HTTP_PORT=str(dev_port),
            ),
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    processes.append(proc)
    api, dev = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dev_port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            assert proc.returncode is None, log_path.read_text()
            try:
                if (await http.get(f"{api}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.2)
        body = {"user": "mallory", "tier": "pro_plus"}
        # the public listener: no dev route, however it is asked for
        for path in ("/dev/identity", "//dev/identity", "/dev/identity/"):
            r = await http.post(f"{api}{path}", json=body)
            assert r.status_code in (404, 405, 307), (path, r.status_code, r.text)
            assert "token" not in r.text
        spoofed = await http.post(
            f"{api}/dev/identity", json=body, headers={"Host": f"127.0.0.1:{dev_port}"}
        )
        assert spoofed.status_code == 404, spoofed.text
        assert (await http.get(f"{api}/dev/identity/jwks.json")).status_code == 404
        # the dev listener serves them, and the public API accepts what it minted
        minted = await http.post(f"{dev}/dev/identity", json={"user": "dev-u", "tier": "free"})
        assert minted.status_code == 200, minted.text
        assert (await http.get(f"{dev}/dev/identity/jwks.json")).status_code == 200
        issued = await http.post(
            f"{api}/v1/tokens", headers={"Authorization": f"Bearer {minted.json()['token']}"}
        )
        assert issued.status_code == 200, issued.text
        assert (await http.get(f"{api}/.well-known/jwks.json")).status_code == 200


def test_a_dev_tier_gate_beyond_loopback_needs_a_separate_dev_listener() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    env |= {"TG_ENV": "dev", "TG_HTTP_HOST": "0.0.0.0", "TG_HTTP_PORT": str(free_port())}
    run = subprocess.run(
        [sys.executable, "-m", "tier_gate"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 78, run.stdout + run.stderr  # EX_CONFIG: the kit's run_cli
    assert "TG_DEV_HTTP_PORT" in run.stderr
