"""`python -m alpaca_sim`: serve the simulator; prints `alpaca-sim listening on http://HOST:PORT`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from alpaca_sim.app import create_app
from alpaca_sim.settings import Settings


def _args(argv: list[str] | None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="alpaca_sim", description="A local Alpaca for tests and demos."
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="0 picks a free port (printed, and see --port-file)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--rate", type=float, help="stream messages per second over all symbols")
    p.add_argument("--seed", type=int)
    p.add_argument("--plan", choices=("none", "basic", "algo_trader_plus"),
                   help="Alpaca plan whose feeds, caps and REST rate to enforce")  # fmt: skip
    p.add_argument("--symbol-cap", type=int, help="distinct symbols per connection (0 = none)")
    p.add_argument("--connection-limit", type=int)
    p.add_argument("--auth-timeout", type=float)
    p.add_argument("--send-buffer-bytes", type=int)
    p.add_argument("--rest-rate-limit", type=int, help="requests/min per key (0 = unlimited)")
    p.add_argument("--feeds", help="entitled feeds, comma separated")
    p.add_argument("--halted", help="SYM or SYM@YYYY-MM-DD with no prints, comma separated")
    p.add_argument("--log-level", default="INFO")
    ns = vars(p.parse_args(argv))
    return {k: v for k, v in ns.items() if v is not None}


def _bound_port(site: web.TCPSite, default: int) -> int:
    server = site._server  # aiohttp exposes the bound port only through the asyncio server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else default


def _write_port_file(path: str, port: int) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # atomic: a reader never sees a half-written file


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = _bound_port(site, settings.port)
    if settings.port_file:
        await asyncio.to_thread(_write_port_file, settings.port_file, port)
    print(f"alpaca-sim listening on http://{settings.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """CLI entry: flags override `SIM_*` environment variables."""
    overrides = _args(argv)
    logging.basicConfig(
        level=overrides.pop("log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings(**overrides)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
