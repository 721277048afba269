"""Archiving a session: the real-time capture streams -> Parquet files + a manifest.

Re-runnable and idempotent: every file of the date is rewritten from the streams, files no
longer produced are removed, and the manifest (written first as incomplete, last as complete)
says whether the date may be served from the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from raxx_contracts import AssetClass, Path, subjects

from md_replay import tape
from md_replay.adapters.capture import CaptureReader
from md_replay.adapters.store import ArchiveStore
from md_replay.domain import Record, session_window
from md_replay.errors import ReplayError, StoreError
from md_replay.metrics import Metrics

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


async def read_manifest(store: ArchiveStore, date: dt.date) -> dict[str, Any] | None:
    """A session's manifest, or None when the date was never archived."""
    data = await store.get(tape.manifest_key(date))
    if data is None:
        return None
    out: dict[str, Any] = orjson.loads(data)
    return out


class Archiver:
    """Archives sessions and prunes those past the retention."""

    def __init__(
        self, store: ArchiveStore, reader: CaptureReader, metrics: Metrics, retention_days: int
    ) -> None:
        self.store = store
        self.reader = reader
        self.metrics = metrics
        self.retention_days = retention_days
        self._lock = asyncio.Lock()

    async def archive(self, date: dt.date, progress: Progress | None = None) -> dict[str, Any]:
        """Archive session `date` from the capture streams; returns the manifest."""
        say = progress or (lambda text: log.info("%s", text))
        async with self._lock:
            started = time.monotonic()
            try:
                manifest = await self._archive(date, say)
            except Exception:
                self.metrics.archive_runs.labels("error").inc()
                raise
            self.metrics.archive_runs.labels("ok").inc()
            self.metrics.archive_seconds.observe(time.monotonic() - started)
            return manifest

    async def _archive(self, date: dt.date, say: Progress) -> dict[str, Any]:
        start_ns, end_ns = session_window(date)
        key = tape.manifest_key(date)
        before = set(await self.store.keys(tape.date_prefix(date)))
        await self.store.put(key, orjson.dumps({"date": date.isoformat(), "complete": False}))
        written: set[str] = {key}
        manifest: dict[str, Any] = {"date": date.isoformat(), "complete": True, "assets": {}}
        total_bytes = 0
        for asset in AssetClass:
            stream = subjects.capture_stream(Path.RT, asset)
            by_symbol: dict[str, list[Record]] = defaultdict(list)
            count = 0
            first_seq = last_seq = 0
            async with contextlib.aclosing(
                self.reader.read(stream, [subjects.capture_root(Path.RT, asset)], start_ns, end_ns)
            ) as batches:
                async for batch in batches:
                    for rec in batch:
                        by_symbol[subjects.parse_market(rec[0]).symbol].append(rec)
                    count += len(batch)
                    first_seq = first_seq or batch[0][1]
                    last_seq = batch[-1][1]
                    say(f"{date} {asset}: read {count} messages (seq {last_seq})")
            symbols: dict[str, dict[str, int]] = {}
            for i, (symbol, records) in enumerate(sorted(by_symbol.items()), 1):
                data = await asyncio.to_thread(tape.to_parquet, records)
                file_key = tape.symbol_key(date, asset, symbol)
                await self.store.put(file_key, data)
                written.add(file_key)
                total_bytes += len(data)
                symbols[symbol] = {"messages": len(records), "bytes": len(data)}
                if i % 100 == 0 or i == len(by_symbol):
                    say(f"{date} {asset}: wrote {i}/{len(by_symbol)} symbol files")
            manifest["assets"][str(asset)] = {
                "stream": stream,
                "messages": count,
                "first_seq": first_seq,
                "last_seq": last_seq,
                "symbols": symbols,
            }
            self.metrics.archived_messages.inc(count)
        for stale in before - written:
            await self.store.delete(stale)
        manifest["bytes"] = total_bytes
        manifest["messages"] = sum(a["messages"] for a in manifest["assets"].values())
        manifest["archived_at"] = dt.datetime.now(dt.UTC).isoformat()
        await self.store.put(key, orjson.dumps(manifest))
        self.metrics.last_archived.set(start_ns / 1e9)
        say(f"{date}: complete, {manifest['messages']} messages, {total_bytes} bytes")
        return manifest

    async def prune(self, today: dt.date) -> int:
        """Delete sessions older than the retention; returns how many objects went."""
        oldest = today - dt.timedelta(days=self.retention_days)
        gone = 0
        for key in await self.store.keys("date="):
            try:
                day = dt.date.fromisoformat(key[5:15])
            except ValueError:
                continue
            if day < oldest:
                await self.store.delete(key)
                gone += 1
        return gone


def require_complete(manifest: dict[str, Any] | None, date: dt.date) -> dict[str, Any]:
    """The manifest if the session is whole in the archive, else `not_archived`."""
    if manifest is None or not manifest.get("complete"):
        raise ReplayError("not_archived", f"the session of {date} is not in the archive")
    return manifest


__all__ = ["Archiver", "StoreError", "read_manifest", "require_complete"]
