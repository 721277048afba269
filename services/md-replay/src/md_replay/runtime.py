"""Connections and long-lived objects of one process (built in the lifespan or the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from raxx_contracts import TierPolicy, default_policy
from raxx_service_kit.nats import ConnectionStatus
from raxx_service_kit.nats import connect as kit_connect

from md_replay.adapters.capture import CaptureReader
from md_replay.adapters.objectstore import NatsObjectStore
from md_replay.adapters.store import ArchiveStore, FsspecStore
from md_replay.archive import Archiver, read_manifest
from md_replay.domain import NS, session_date, session_window
from md_replay.metrics import Metrics
from md_replay.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the service and the CLI share."""

    nc: Client
    status: ConnectionStatus
    store: ArchiveStore
    reader: CaptureReader
    archiver: Archiver
    policy: TierPolicy


def make_store(settings: Settings, nc: Client) -> ArchiveStore:
    """The configured archive store: an fsspec URL, else the NATS Object Store bucket."""
    if settings.archive_url:
        return FsspecStore(settings.archive_url)
    return NatsObjectStore(nc.jetstream(), settings.archive_bucket)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, metrics: Metrics, nc: Client | None = None
) -> AsyncIterator[Runtime]:
    """Connect (unless `nc` is given) and build the shared objects; close on exit."""
    own = nc is None
    status = ConnectionStatus("md-replay")
    conn = nc or await kit_connect(settings, "md-replay", status=status)
    try:
        store = make_store(settings, conn)
        reader = CaptureReader(conn, settings.archive_batch)
        archiver = Archiver(store, reader, metrics, settings.retention_days)
        yield Runtime(conn, status, store, reader, archiver, default_policy())
    finally:
        if own:
            with contextlib.suppress(Exception):
                await conn.drain()


async def schedule(rt: Runtime, settings: Settings) -> None:
    """Archive each session `archive_lag_seconds` after it ends (catching up a missed one
    on start) and prune what is past the retention. Runs until cancelled (supervised: a
    failure is retried with backoff by the kit's Supervisor)."""
    while True:
        now = time.time_ns()
        today = session_date(now)
        yesterday = today - dt.timedelta(days=1)
        manifest = await read_manifest(rt.store, yesterday)
        if manifest is None or not manifest.get("complete"):
            log.info("archiving the session of %s", yesterday)
            await rt.archiver.archive(yesterday)
            await rt.archiver.prune(today)
        due = session_window(today)[1] + int(settings.archive_lag_seconds * NS)
        await asyncio.sleep(max(1.0, (due - time.time_ns()) / NS))
