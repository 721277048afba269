"""NATS: the hub's capture streams and KV buckets (declared here only), the
latest-value store and the leader lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RePublish, StorageType, StreamConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from raxx_contracts import AssetClass, Path, subjects
from raxx_service_kit.nats import ConnectionStatus

from market_data_hub.aio import raise_if_cancelling
from market_data_hub.metrics import Metrics
from market_data_hub.settings import Settings

log = logging.getLogger(__name__)


def _has_pending_buffer(nc: Client) -> bool:
    return all(hasattr(nc, a) for a in ("_send_command", "_flush_queue", "_flush_pending", "stats"))


async def publish_batch(
    nc: Client, batch: list[tuple[str, bytes]], source_seqs: list[int] | None = None
) -> None:
    """Publish (subject, payload) pairs in order, as plain `PUB`s; for builder-made subjects.
    With `source_seqs` (one per pair) each goes as an `HPUB` carrying
    `Raxx-Source-Sequence: <seq>` (the delayed path's link to its real-time message).

    nats-py's `publish` only appends a `PUB` command to the client's pending buffer, which its
    flusher task writes once the loop is free; awaiting it per message costs three coroutine
    frames and a subject check (~1.5 us/msg, a quarter of the hub's hot path). Here one frame's
    commands are joined and appended in one go through the same buffer (same ordering,
    flushing, reconnect buffering and `stats`); subjects come from `raxx_contracts.subjects`
    builders, which never yield white space. Falls back to `nc.publish` per message when the
    client is not connected (so the documented reconnect-buffer limits apply), draining, a
    payload exceeds `max_payload`, or the installed nats-py lacks that buffer.
    """
    if nc.is_connected and not nc.is_draining_pubs and _FAST_PATH.get(type(nc), True):
        if type(nc) not in _FAST_PATH:
            _FAST_PATH[type(nc)] = _has_pending_buffer(nc)
            if not _FAST_PATH[type(nc)]:
                return await publish_batch(nc, batch, source_seqs)
        limit = nc.max_payload
        size = 0
        parts = []
        for i, (subj, data) in enumerate(batch):
            n = len(data)
            if n > limit:
                break
            size += n
            if source_seqs is None:
                parts.append(b"PUB %b %d\r\n%b\r\n" % (subj.encode(), n, data))
            else:
                hdr = _SOURCE_HDR % source_seqs[i]
                h = len(hdr)
                parts.append(b"HPUB %b %d %d\r\n%b%b\r\n" % (subj.encode(), h, h + n, hdr, data))
        else:
            nc.stats["out_msgs"] += len(batch)
            nc.stats["out_bytes"] += size
            await nc._send_command(b"".join(parts))
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
            return None
    publish = nc.publish
    for i, (subj, data) in enumerate(batch):
        if source_seqs is None:
            await publish(subj, data)
        else:
            await publish(subj, data, headers={subjects.HDR_SOURCE_SEQUENCE: str(source_seqs[i])})
    return None


_SOURCE_HDR = b"NATS/1.0\r\n" + subjects.HDR_SOURCE_SEQUENCE.encode() + b": %d\r\n\r\n"
_FAST_PATH: dict[type, bool] = {}


@dataclass
class Buckets:
    """The hub's KV buckets and its capture streams (`MD_RT_STOCKS`, ... by (path, asset))."""

    interest: KeyValue
    latest: KeyValue
    leader: KeyValue
    streams: dict[tuple[Path, AssetClass], str] = field(default_factory=dict)


def capture_config(path: Path, asset: AssetClass, settings: Settings) -> StreamConfig:
    """The capture stream of (path, asset): stores `mdcap.<path>.<asset>.>` and republishes each
    stored message on `md.<path>.<asset>...` with `Nats-Stream`, `Nats-Subject`,
    `Nats-Sequence`, `Nats-Last-Sequence` (per subject) and `Nats-Time-Stamp`. Subscribers thus
    see only what was stored, and read gaps back with direct gets (`allow_direct`)."""
    return StreamConfig(
        name=subjects.capture_stream(path, asset),
        subjects=[subjects.capture_root(path, asset)],
        storage=StorageType.FILE,
        max_age=settings.capture_window_seconds,
        max_bytes=settings.capture_max_bytes or -1,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
        republish=RePublish(
            src=subjects.capture_root(path, asset), dest=subjects.path_root(path, asset)
        ),
        description=f"md.{path}.{asset} capture: stored, then republished (market-data-hub)",
    )


async def declare(js: JetStreamContext, settings: Settings) -> Buckets:
    """Declare (idempotently) the capture streams and the KV buckets.

    The hub is the only declarer of these streams: a re-declaration overwrites their config.
    """
    streams: dict[tuple[Path, AssetClass], str] = {}
    for path in Path:
        for asset in AssetClass:
            cfg = capture_config(path, asset, settings)
            try:
                await js.add_stream(cfg)
            except nats.js.errors.BadRequestError:
                await js.update_stream(cfg)
            streams[(path, asset)] = str(cfg.name)
    p = settings.bucket_prefix

    async def kv(name: str, **kw: object) -> KeyValue:
        return await js.create_key_value(KeyValueConfig(bucket=f"{p}_{name}", **kw))  # type: ignore[arg-type]

    return Buckets(
        interest=await kv("INTEREST", history=1),
        latest=await kv("LATEST", history=1),
        leader=await kv("LEADER", history=1, ttl=settings.leader_ttl_seconds),
        streams=streams,
    )


def latest_key(subject: str) -> str:
    """KV key of the latest value for a market subject: the subject without `md.` (or
    `mdcap.`: a capture subject and its public twin share one key)."""
    return subject.split(".", 1)[1]


class LatestStore:
    """Latest quote/trade per symbol and path in KV, coalesced: at most one put per key/flush."""

    def __init__(self, kv: KeyValue, interval: float) -> None:
        self.kv = kv
        self.interval = interval
        self._dirty: dict[str, bytes] = {}

    def mark(self, subject: str, data: bytes) -> None:
        """Remember `data` as the latest on `subject` (written on the next flush)."""
        self._dirty[subject] = data

    async def flush(self) -> None:
        """Write every changed key."""
        dirty, self._dirty = self._dirty, {}
        items = list(dirty.items())
        for i in range(0, len(items), 64):
            await asyncio.gather(*(self.kv.put(latest_key(s), d) for s, d in items[i : i + 64]))

    async def run(self) -> None:
        """Flush forever."""
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                raise_if_cancelling()
                log.warning("latest flush failed: %s", exc)

    async def get(self, subject: str) -> bytes | None:
        """Latest payload on `subject`, if any."""
        try:
            entry = await self.kv.get(latest_key(subject))
        except (KeyNotFoundError, NotFoundError):
            return None
        return entry.value


class Leadership:
    """At most one replica holds the upstream: a key in a KV bucket whose max_age is the TTL.

    The leader renews every ttl/3 with a revision-checked update. It steps down on its own when
    it could not renew for 0.6*ttl, i.e. before the key can expire for anyone else.
    """

    KEY = "upstream"

    def __init__(
        self,
        kv: KeyValue,
        replica_id: str,
        ttl: float,
        metrics: Metrics,
        nc: Client | None = None,
        status: ConnectionStatus | None = None,
    ) -> None:
        self.kv = kv
        self.nc = nc
        self.status = status or ConnectionStatus()
        self.replica_id = replica_id
        self.ttl = ttl
        self.metrics = metrics
        self.is_leader = False
        self.changed = asyncio.Event()
        self._rev = 0
        self._last_ok = 0.0
        self._last_answer: float | None = None
        """When the lease bucket last answered a round (a refused create counts: it was read)."""
        self._last_error = "no election round has completed yet"
        self._warned = False
        self.last_round = time.monotonic()
        """When the last election round finished (whatever its outcome): liveness."""

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            self.metrics.leader.set(1 if leader else 0)
            self.metrics.leader_changes.labels("leader" if leader else "follower").inc()
            log.info("replica %s is now %s", self.replica_id, "leader" if leader else "follower")
            self.changed.set()

    async def step(self) -> None:
        """One election round: renew if leading, else try to take the free key."""
        value = self.replica_id.encode()
        try:
            if self.is_leader:
                op = self.kv.update(self.KEY, value, last=self._rev)
            else:
                op = self.kv.create(self.KEY, value)
            self._rev = await asyncio.wait_for(op, self.ttl / 4)
            self._last_ok = self._last_answer = time.monotonic()
            self._warned = False
            self._set(True)
        except KeyWrongLastSequenceError:
            self._last_answer = time.monotonic()
            self._warned = False
            self._set(False)
        except Exception as exc:
            raise_if_cancelling()
            self._last_error = self._why(exc)
            if not self._warned and self.problem():
                self._warned = True
                log.warning("leader lease bucket unusable (not ready): %s", self._last_error)
            if self.is_leader and time.monotonic() - self._last_ok > 0.6 * self.ttl:
                log.warning("cannot renew leadership (%s): stepping down", exc)
                self._set(False)

    def _why(self, exc: Exception) -> str:
        """The real reason a round failed: the exception, plus what the connection says."""
        why = str(exc) or f"no answer from the KV bucket within {self.ttl / 4:.1f} s"
        out = f"{type(exc).__name__}: {why}"
        if self.nc is not None and not self.nc.is_connected:
            out += f"; NATS {self.status.problem(self.nc)}"
        elif err := self.status.recent_error(self.ttl * 2):
            out += f"; NATS reported: {err}"
        return out[:300]

    def problem(self) -> str | None:
        """Why this replica cannot take part in the election (None while it can).

        A follower standing by is fine; one whose lease bucket has not answered a round for a
        whole TTL (no permission, bucket gone, JetStream down) could never take over.
        """
        if self._last_answer is None or time.monotonic() - self._last_answer > self.ttl:
            return f"lease bucket unusable: {self._last_error}"
        return None

    async def run(self) -> None:
        """Election loop."""
        while True:
            raise_if_cancelling()
            await self.step()
            self.last_round = time.monotonic()
            await asyncio.sleep(self.ttl / 3 if self.is_leader else min(1.0, self.ttl / 4))

    async def resign(self) -> None:
        """Give the key up at once (clean shutdown) so a follower takes over without waiting."""
        if self.is_leader:
            with contextlib.suppress(Exception):
                await self.kv.delete(self.KEY, last=self._rev)
            self._set(False)
