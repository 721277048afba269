"""serve(): a real process answers, and SIGTERM runs the lifespan shutdown and exits 0."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
from raxx_service_kit.serve import LOG_FORMAT, configure_logging, event_loop, uvicorn_config
from raxx_service_kit.settings import ServiceSettings

APP = textwrap.dedent(
    """
    import contextlib, sys
    from fastapi import FastAPI
    from raxx_service_kit.serve import serve
    from raxx_service_kit.settings import ServiceSettings

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        print("lifespan-shutdown", flush=True)

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    sys.exit(serve(app, ServiceSettings(http_port=int(sys.argv[1]))))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_and_shuts_down_gracefully_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises the captured signal once shut down, so the parent sees "ended by SIGTERM"
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert "lifespan-shutdown" in out
    assert " INFO uvicorn.error: " in err  # uvicorn logs in the one format


def test_config_uses_settings_and_uvloop() -> None:
    config = uvicorn_config(
        object(), ServiceSettings(http_host="0.0.0.0", http_port=9, log_level="DEBUG")
    )
    assert (config.host, config.port, config.loop, config.access_log) == (
        "0.0.0.0",
        9,
        "uvloop",
        False,
    )
    assert event_loop() == "uvloop"


def test_configure_logging_sets_level_and_format() -> None:
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    try:
        configure_logging("warning")
        assert root.level == logging.WARNING
        assert root.handlers[0].formatter is not None
        assert root.handlers[0].formatter._fmt == LOG_FORMAT
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
