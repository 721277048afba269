"""One NATS connect with one set of options, its connection status, and `.creds` text.

The options are the hub's (the service that measured them): reconnect forever every 0.5 s, a
ping every 2 s with 2 outstanding allowed (a frozen server or dead TCP path is noticed in
~4-6 s, not nats-py's 2 x 120 s), a 64 MiB reconnect buffer, and callbacks that log and
remember why the connection is down (`ConnectionStatus`, for `/readyz` reasons).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client, RawCredentials

from raxx_service_kit.errors import RetryableError
from raxx_service_kit.http import Check
from raxx_service_kit.settings import ServiceSettings

log = logging.getLogger(__name__)

CONNECT_OPTIONS: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.5,
    "connect_timeout": 3,
    "ping_interval": 2,
    "max_outstanding_pings": 2,
    "pending_size": 64 * 1024 * 1024,
}
"""The options every connection gets (overridable per call)."""


def creds_text(user_jwt: str, user_seed: str) -> str:
    """The standard NATS `.creds` file text (user JWT + nkey seed)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user_seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


Credentials = Path | str | RawCredentials
"""A `.creds` file path (Path or str), or `RawCredentials(text)`."""


def credentials(settings: ServiceSettings) -> Credentials | None:
    """The settings' credentials: the file when set, else the text, else None."""
    if settings.nats_creds is not None:
        return settings.nats_creds
    if settings.nats_creds_text is not None:
        return RawCredentials(settings.nats_creds_text.get_secret_value())
    return None


class ConnectionStatus:
    """What a connection went through, from its callbacks (nats-py reports permission
    violations only through `error_cb`, so a readiness answer that says why must remember)."""

    def __init__(self, name: str = "nats") -> None:
        self.name = name
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.disconnected_at: float | None = None

    async def on_error(self, exc: Exception) -> None:
        """`error_cb`."""
        error = f"{type(exc).__name__}: {exc}"[:200]
        if error != self.last_error:  # reconnect attempts repeat the same error every 0.5 s
            log.warning("nats %s: %s", self.name, error)
        self.last_error = error
        self.last_error_at = time.monotonic()

    async def on_disconnected(self) -> None:
        """`disconnected_cb`."""
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        log.warning("nats %s: disconnected", self.name)

    async def on_reconnected(self) -> None:
        """`reconnected_cb`."""
        self.disconnected_at = None
        log.info("nats %s: reconnected", self.name)

    def recent_error(self, within: float) -> str | None:
        """The last error reported by the client if it came within `within` seconds."""
        if self.last_error_at is not None and time.monotonic() - self.last_error_at <= within:
            return self.last_error
        return None

    def problem(self, nc: Client | None) -> str | None:
        """Why `nc` cannot be used right now (None while connected)."""
        if nc is None:
            return "not connected yet"
        if nc.is_connected:
            return None
        since = ""
        if self.disconnected_at is not None:
            since = f" for {time.monotonic() - self.disconnected_at:.1f} s"
        state = (
            "closed" if nc.is_closed else "reconnecting" if nc.is_reconnecting else "disconnected"
        )
        err = f" (last error: {self.last_error})" if self.last_error else ""
        return f"{state}{since}{err}"

    def check(self, nc: Client | None, *, critical: bool = True) -> Check:
        """A readiness check for `nc`."""
        reason = self.problem(nc)
        return Check(ok=reason is None, reason=reason, critical=critical)


def connect_options(
    name: str, status: ConnectionStatus, creds: Credentials | None, **options: Any
) -> dict[str, Any]:
    """nats-py connect keywords: `CONNECT_OPTIONS`, the connection's name, `status`'s
    callbacks, the credentials (a file path or text), then `options` over all of them. The one
    set of options behind `connect` and the kit's faststream broker."""
    opts: dict[str, Any] = {
        **CONNECT_OPTIONS,
        "name": name,
        "error_cb": status.on_error,
        "disconnected_cb": status.on_disconnected,
        "reconnected_cb": status.on_reconnected,
    }
    if creds is not None:
        opts["user_credentials"] = str(creds) if isinstance(creds, Path) else creds
    return opts | options


async def connect(
    settings: ServiceSettings,
    name: str,
    *,
    status: ConnectionStatus | None = None,
    creds: Credentials | None = None,
    url: str | None = None,
    first_connect_timeout: float = 10.0,
    **options: Any,
) -> Client:
    """Connect with `CONNECT_OPTIONS` (+ `options`); `creds`/`url` override the settings'.

    The first connect must succeed within `first_connect_timeout` seconds (nats-py alone would
    retry forever): a `RetryableError` otherwise, for the caller's start-up retry or
    supervisor. After that the client reconnects forever.
    """
    status = status or ConnectionStatus(name)
    chosen = creds if creds is not None else credentials(settings)
    opts = connect_options(name, status, chosen, **options)
    target = url or settings.nats_url
    nc = Client()
    try:
        async with asyncio.timeout(first_connect_timeout):
            await nc.connect(target, **opts)
    except Exception as exc:
        await nc.close()
        raise RetryableError(
            "the message bus is unavailable",
            2.0,
            code="nats_unavailable",
            log_detail=f"{name} -> {target}: {type(exc).__name__}: {exc}",
        ) from exc
    return nc
