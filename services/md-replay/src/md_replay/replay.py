"""The replay responder on `md.ctl.replay.<tier>.<user token>`.

The server lets a credential publish only on its own tier's subject with its own token, so the
subject says who asks. Everything goes to subjects inside that user's inbox
(`_INBOX_U.<token>.`); a request whose reply or deliver subject lies elsewhere is dropped and
counted, never answered. Start requests are shared by the replicas (queue group); acks and
stops reach every replica (plain subscription) and the one running the replay acts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import TypeAdapter, ValidationError
from raxx_contracts import (
    ContractError,
    NanoDatetime,
    Path,
    ReplayAccepted,
    ReplayAck,
    ReplayCommand,
    ReplayEnd,
    ReplayProgress,
    ReplayRequest,
    ReplayStop,
    TierPolicy,
    UnknownTierError,
    encode,
    encode_frame,
    subjects,
)
from raxx_contracts.replay import HDR_KIND, KIND_END, KIND_FRAME, KIND_PROGRESS, EndReason

from md_replay import domain, tape
from md_replay.adapters.capture import CaptureReader
from md_replay.adapters.store import ArchiveStore
from md_replay.archive import read_manifest
from md_replay.domain import Record
from md_replay.errors import ReplayError, StoreError
from md_replay.metrics import Metrics
from md_replay.settings import Settings

log = logging.getLogger(__name__)
QUEUE = "md-replay"
MAX_REQUEST_BYTES = 16 * 1024
_COMMAND: TypeAdapter[ReplayRequest | ReplayAck | ReplayStop] = TypeAdapter(ReplayCommand)


@dataclass
class Plan:
    """What a validated request will stream."""

    source: str
    path: Path
    until_ns: int
    messages: int | None
    batches: Callable[[], AsyncGenerator[list[Record], None]]
    table: Callable[[], Awaitable[pa.Table]] | None = None
    """The archive's merged table, framed column-wise at max speed (no object per record)."""


@dataclass
class Running:
    """One replay in progress."""

    user: str
    req: ReplayRequest
    plan: Plan
    sent: int = 0
    acked: int = 0
    messages: int = 0
    last_ts: int = 0
    acked_event: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: EndReason | None = None
    started: bool = False
    """Set on the task's first step: from then on a stop cancels it."""
    task: asyncio.Task[None] | None = None


class Replayer:
    """Validates replay requests and runs each replay as a supervised task."""

    def __init__(
        self,
        nc: Client,
        store: ArchiveStore,
        reader: CaptureReader,
        settings: Settings,
        policy: TierPolicy,
        metrics: Metrics,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.nc = nc
        self.store = store
        self.reader = reader
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.now_ns = now_ns
        self.rate = domain.UserRate(settings.requests_per_minute)
        self.running: dict[tuple[str, str], Running] = {}
        self._subs: list[Subscription] = []

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe: starts in the queue group, acks and stops on every replica."""
        self._subs = [
            await self.nc.subscribe(subjects.REPLAY_ANY, queue=QUEUE, cb=self._on_start),
            await self.nc.subscribe(subjects.REPLAY_ANY, cb=self._on_control),
        ]
        await self.nc.flush()

    async def stop(self) -> None:
        """Unsubscribe and end every replay (`shutdown`), releasing its resources."""
        for sub in self._subs:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        self._subs = []
        runs = list(self.running.values())
        for r in runs:
            r.stop_reason = "shutdown"
            if r.task:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)

    # -- requests -----------------------------------------------------------------------------

    def _who(self, msg: Msg) -> tuple[str, str] | None:
        try:
            who = subjects.parse_replay(msg.subject)
        except ContractError:
            return None
        return who.tier, who.user_token

    async def _on_start(self, msg: Msg) -> None:
        who = self._who(msg)
        if who is None:
            return
        tier, user = who
        reply_ok = bool(msg.reply) and subjects.is_user_reply(msg.reply, user)
        try:
            if len(msg.data) > MAX_REQUEST_BYTES:
                raise ReplayError("malformed", f"request larger than {MAX_REQUEST_BYTES} bytes")
            try:
                cmd = _COMMAND.validate_json(msg.data)
            except ValidationError as exc:
                # Malformed requests count against the rate too (a flood is a flood).
                if not self.rate.allow(user, time.monotonic()):
                    raise ReplayError("rate_limited", "too many replay requests") from exc
                raise ReplayError("malformed", _first_error(exc)) from exc
            if not isinstance(cmd, ReplayRequest):
                return  # acks and stops: the control subscription
            if not reply_ok:
                # Never publish where the requester points unless it is its own inbox.
                self.metrics.requests.labels("start", "foreign_reply").inc()
                log.warning("replay request with a reply outside the requester's inbox dropped")
                return
            if not self.rate.allow(user, time.monotonic()):
                raise ReplayError("rate_limited", "too many replay requests; retry in a minute")
            if not subjects.is_user_reply(cmd.deliver, user):
                raise ReplayError("malformed", "deliver must lie inside your own inbox")
            mine = sum(1 for (u, _) in self.running if u == user)
            if mine >= self.settings.max_concurrent_per_user:
                raise ReplayError(
                    "too_many_replays",
                    f"at most {self.settings.max_concurrent_per_user} replays at once per user",
                )
            if len(self.running) >= self.settings.max_concurrent_total:
                raise ReplayError("too_many_replays", "the replay service is busy; retry later")
            if (user, cmd.replay_id) in self.running:
                raise ReplayError("malformed", "a replay with this id is already running")
            if len(cmd.symbols) > self.settings.max_symbols:
                raise ReplayError(
                    "too_many_symbols", f"at most {self.settings.max_symbols} symbols per replay"
                )
            try:
                plan = await self.prepare(tier, cmd)
            except (ReplayError, asyncio.CancelledError):
                raise
            except Exception as exc:  # every request gets an answer, even on a surprise
                log.exception("replay request %s could not be prepared", cmd.replay_id)
                raise ReplayError("unavailable", "the replay cannot be prepared now") from exc
        except ReplayError as exc:
            self.metrics.requests.labels("start", exc.code).inc()
            if reply_ok:
                await self._publish(msg.reply, encode(exc.reply()))
            return
        run = Running(user=user, req=cmd, plan=plan)
        key = (user, cmd.replay_id)
        self.running[key] = run
        self.metrics.active.set(len(self.running))
        self.metrics.requests.labels("start", "accepted").inc()
        s = self.settings
        accepted = ReplayAccepted(
            replay_id=cmd.replay_id,
            source="archive" if plan.source == "archive" else "capture",
            messages=plan.messages,
            until=NanoDatetime.from_epoch_ns(plan.until_ns),
            ack_every=s.ack_every,
            window=s.window,
            ack_timeout_s=s.ack_timeout_seconds,
        )
        await self._publish(msg.reply, encode(accepted))
        run.task = asyncio.create_task(self._run(run), name=f"replay-{cmd.replay_id}")
        run.task.add_done_callback(lambda _t: self._finished(key))

    def _finished(self, key: tuple[str, str]) -> None:
        run = self.running.pop(key, None)
        self.metrics.active.set(len(self.running))
        if run and run.task and not run.task.cancelled() and (exc := run.task.exception()):
            log.error("replay task failed", exc_info=exc)

    async def _on_control(self, msg: Msg) -> None:
        who = self._who(msg)
        if who is None:
            return
        _, user = who
        if len(msg.data) > MAX_REQUEST_BYTES:
            return  # an ack or a stop is tens of bytes; every replica would parse a flood
        try:
            cmd = _COMMAND.validate_json(msg.data)
        except ValidationError:
            return
        if isinstance(cmd, ReplayRequest):
            return
        run = self.running.get((user, cmd.replay_id))
        if isinstance(cmd, ReplayAck):
            if run is not None and cmd.frames > run.acked:
                run.acked = min(cmd.frames, run.sent)
                run.acked_event.set()
            return
        self.metrics.requests.labels("stop", "ok" if run else "unknown_replay").inc()
        if run is not None:
            # Answer at once: the task releases its consumer, publishes the end marker on the
            # deliver subject and flushes by itself; waiting for that here made a stop time out
            # on a loaded machine (the requester only needs to know the replay is ending).
            # A task that has not started yet sees `stop_reason` on its first step and ends
            # there with its end marker (cancelling it now would skip its `finally`).
            run.stop_reason = "stopped"
            if run.task is not None and run.started:
                run.task.cancel()
        if msg.reply and subjects.is_user_reply(msg.reply, user) and run is not None:
            end = ReplayEnd(
                replay_id=cmd.replay_id, reason="stopped", messages=run.messages, frames=run.sent
            )
            await self._publish(msg.reply, encode(end))

    # -- planning -----------------------------------------------------------------------------

    async def prepare(self, tier: str, req: ReplayRequest) -> Plan:
        """Validate `req` for `tier` and decide where its session comes from."""
        s = self.settings
        now = self.now_ns()
        domain.check_date(req.date, now, s.retention_days)
        try:
            path = self.policy.stream_path(tier, req.asset_class)
        except UnknownTierError as exc:
            raise ReplayError("not_entitled", f"tier {tier} may not replay") from exc
        until = domain.visible_until(self.policy, tier, req.asset_class, now, s.delay_seconds)
        day_start, day_end = domain.session_window(req.date)
        start = day_start
        if req.start is not None:
            start = req.start.epoch_ns()
            if not day_start <= start < day_end:
                raise ReplayError("malformed", f"start lies outside the session of {req.date}")
        if start > until:
            if req.start is not None:
                raise ReplayError(
                    "window_expired",
                    "nothing at or after start is old enough for your tier's delay",
                )
            until = start - 1  # the session began less than the delay ago: nothing yet
        until = min(until, day_end - 1)
        wanted = domain.public_subjects(req)
        channels = [str(c) for c in req.channels]
        try:
            manifest = await read_manifest(self.store, req.date)
        except StoreError as exc:
            raise ReplayError("unavailable", "the archive cannot be read now") from exc
        if manifest is not None and manifest.get("complete"):
            # Reading and merging the files is the heavy part: it runs in the replay's task,
            # after the answer, so a large request is accepted at once.
            async def merged() -> pa.Table:
                tables = await self._load(req)
                return await asyncio.to_thread(tape.select, tables, channels, start, until)

            async def from_archive() -> AsyncGenerator[list[Record], None]:
                async for chunk in _table_batches(await merged()):
                    yield chunk

            return Plan("archive", path, until, None, from_archive, merged)
        stream = subjects.capture_stream(Path.RT, req.asset_class)
        first = await self.reader.first_time_ns(stream)
        info_first_seq = await self._first_seq(stream)
        today = domain.session_date(now)
        kept_from_start = first is not None and (info_first_seq <= 1 or first <= start)
        if req.date < today and not kept_from_start:
            raise ReplayError("not_archived", f"the session of {req.date} is not in the archive")
        if first is not None and not kept_from_start:
            raise ReplayError(
                "window_expired",
                f"the capture keeps data from {NanoDatetime.from_epoch_ns(first).rfc3339()} on",
            )
        filters = sorted(subjects.to_capture(w) for w in wanted)

        def batches() -> AsyncGenerator[list[Record], None]:
            return self.reader.read(stream, filters, start, until + 1)

        return Plan("capture", path, until, None, batches)

    async def _first_seq(self, stream: str) -> int:
        try:
            info = await self.reader.js.stream_info(stream)
        except NatsError:
            return 0
        return int(info.state.first_seq)

    async def _load(self, req: ReplayRequest) -> list[pa.Table]:
        tables: list[pa.Table] = []
        for symbol in dict.fromkeys(req.symbols):
            try:
                data = await self.store.get(tape.symbol_key(req.date, req.asset_class, symbol))
            except StoreError as exc:
                raise ReplayError("unavailable", "the archive cannot be read now") from exc
            if data is not None:
                tables.append(await asyncio.to_thread(tape.read_table, data))
        return tables

    # -- streaming ----------------------------------------------------------------------------

    async def _publish(self, subject: str, body: bytes, kind: str | None = None) -> None:
        try:
            await self.nc.publish(subject, body, headers={HDR_KIND: kind} if kind else None)
        except NatsError:
            log.warning("replay publish failed", exc_info=True)

    async def _run(self, run: Running) -> None:
        s = self.settings
        req, plan = run.req, run.plan
        reason: EndReason = "complete"
        error: str | None = None
        span = int(s.frame_span_ms * 1e6) if req.speed else None
        pacer: domain.Pacer | None = None
        seen: dict[str, str] = {}

        def shown(subject: str) -> str:
            out = seen.get(subject)
            if out is None:
                out = seen[subject] = domain.deliver_subject(subject, plan.path)
            return out

        async def send(body: bytes, count: int, last_ts: int) -> bool:
            # nats-py's publish swallows a CancelledError that lands inside it (its flush
            # queue), so a stop is also checked here, not only delivered by task.cancel().
            if run.stop_reason is not None:
                raise asyncio.CancelledError
            if not await self._window(run):
                return False
            await self.nc.publish(req.deliver, body, headers={HDR_KIND: KIND_FRAME})
            # Let the connection's flusher write this frame while the next one is built
            # (publish only buffers; without a yield the loop is hogged).
            await asyncio.sleep(0)
            run.sent += 1
            run.messages += count
            run.last_ts = last_ts
            self.metrics.frames.inc()
            self.metrics.messages.inc(count)
            if run.sent % s.progress_every == 0:
                await self._progress(run)
            return True

        try:
            run.started = True
            if run.stop_reason is not None:  # stopped while the acceptance was going out
                reason = run.stop_reason
                return
            if plan.table is not None and not req.speed:
                table = await plan.table()
                for body, count, last_ts in tape.column_frames(
                    table, shown, s.frame_records, s.frame_bytes
                ):
                    if not await send(body, count, last_ts):
                        reason = "ack_timeout"
                        return
                return
            async with contextlib.aclosing(plan.batches()) as batches:
                async for batch in batches:
                    for frame in domain.frames(batch, s.frame_records, s.frame_bytes, span):
                        if req.speed:
                            if pacer is None:
                                pacer = domain.Pacer(req.speed, frame[0][2], time.monotonic())
                            wait = pacer.due(frame[0][2]) - time.monotonic()
                            if wait > 0 and run.stop_reason is None:
                                await asyncio.sleep(wait)  # pacing: the replay's own clock
                        recs = [(shown(r[0]), r[1], r[2], r[3]) for r in frame]
                        if not await send(encode_frame(recs), len(frame), frame[-1][2]):
                            reason = "ack_timeout"
                            return
        except asyncio.CancelledError:
            reason = run.stop_reason or "shutdown"
        except ReplayError as exc:
            reason, error = "error", exc.code
        except Exception:
            log.exception("replay %s failed", req.replay_id)
            reason, error = "error", "unavailable"
        finally:
            await self._progress(run)
            end = ReplayEnd(
                replay_id=req.replay_id, reason=reason, messages=run.messages, frames=run.sent,
                error=error,
            )  # fmt: skip
            await self._publish(req.deliver, encode(end), KIND_END)
            with contextlib.suppress(NatsError):
                await self.nc.flush(timeout=5)
            self.metrics.ended.labels(reason).inc()

    async def _window(self, run: Running) -> bool:
        """Wait until fewer than `window` frames are unacknowledged; False on ack timeout."""
        deadline = time.monotonic() + self.settings.ack_timeout_seconds
        while run.sent - run.acked >= self.settings.window:
            run.acked_event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(run.acked_event.wait(), left)
            except TimeoutError:
                return False
        return True

    async def _progress(self, run: Running) -> None:
        body = ReplayProgress(
            replay_id=run.req.replay_id, messages=run.messages, frames=run.sent,
            last_timestamp=NanoDatetime.from_epoch_ns(run.last_ts) if run.last_ts else None,
        )  # fmt: skip
        await self._publish(run.req.deliver, encode(body), KIND_PROGRESS)


async def _table_batches(table: pa.Table) -> AsyncGenerator[list[Record], None]:
    it: Iterator[list[Record]] = tape.iter_records(table)
    while True:
        chunk = await asyncio.to_thread(next, it, None)
        if chunk is None:
            return
        yield chunk


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))
