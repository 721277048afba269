"""Run a service's ASGI app: one log format, uvloop when installed, graceful shutdown.

    def main() -> int:
        settings = Settings()
        return serve(create_app(settings), settings)

SIGTERM/SIGINT stop accepting connections, let in-flight requests finish (at most
`graceful_seconds`), then run the app's lifespan shutdown (which stops its supervisor), so
`make run`'s Ctrl-C and a Kubernetes rollout end the same clean way.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import uvicorn

from raxx_service_kit.settings import ServiceSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """The one log format for every service, at `level` (root logger; replaces handlers)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)


def event_loop() -> str:
    """`"uvloop"` when it is installed (the kit's `uvloop` extra), else asyncio's."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def uvicorn_config(
    app: Any, settings: ServiceSettings, *, graceful_seconds: float = 10.0, **options: Any
) -> uvicorn.Config:
    """The uvicorn config every service uses (no access log: services log what matters)."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop=event_loop(),
        log_level=settings.log_level.lower(),
        log_config=None,  # keep `configure_logging`'s format for uvicorn's loggers too
        access_log=False,
        timeout_graceful_shutdown=int(graceful_seconds),
        **options,
    )


def serve(
    app: Any,
    settings: ServiceSettings,
    *,
    extra_ports: Sequence[int] = (),
    graceful_seconds: float = 10.0,
) -> int:
    """Configure logging and serve `app` until SIGTERM/SIGINT.

    Returns 0; after a signal, uvicorn re-raises it once the shutdown is complete, so the
    process ends "by SIGTERM" as a supervisor expects.

    `extra_ports` serve the same app on more sockets of `settings.http_host` (tier-gate's
    dev-only listener).
    """
    configure_logging(settings.log_level)
    config = uvicorn_config(app, settings, graceful_seconds=graceful_seconds)
    sockets = [config.bind_socket()]
    for port in extra_ports:
        sockets.append(uvicorn.Config(app, host=settings.http_host, port=port).bind_socket())
    uvicorn.Server(config).run(sockets=sockets)
    return 0
