"""`MdClient`: market data over NATS with a tier-gate credential that renews itself, and no
gap: every message is delivered once, in stream order per subject, across reconnects, credential
swaps and server restarts.

Every `md...` message is republished by a capture stream with its sequence and the sequence of
the previous message on the same subject (`recovery` module). One pump task takes every message
(live, from any connection) in arrival order: a sequence already delivered is dropped; a
`Nats-Last-Sequence` above the last delivered one reveals a gap, which is read back from the
stream (batch direct get) and delivered before the message that revealed it, while newer live
messages wait in the pump's queue. After a reconnect or a credential swap every subscription is
read back from its high-water mark without waiting for the next live message. What the stream
no longer holds is delivered as a `Gap` item and counted in `raxx_md_client_gaps_total`.

Renewal: the new connection is opened and its subscriptions are confirmed by the server (flush)
*before* the old connection is closed; messages seen on both are dropped by sequence. Messages
without capture headers (only on a server without the capture streams) are passed through
without gap detection or de-duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client, RawCredentials
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from raxx_contracts import (
    TRADE_COMPANIONS,
    AssetClass,
    Bar,
    Channel,
    DecodeError,
    ErrorReply,
    Imbalance,
    InterestReply,
    InterestRequest,
    Luld,
    OptionQuote,
    OptionTrade,
    Quote,
    Trade,
    TradeCancel,
    TradeCorrection,
    TradingStatus,
    decode,
    encode,
    subjects,
)

from raxx_md_client.credentials import Credential, new_user_seed, public_key
from raxx_md_client.recovery import (
    ClientMetrics,
    FastHeadersClient,
    Gap,
    GapReason,
    MdClientError,
    RecoveryDeniedError,
    RecoveryError,
    SequenceBook,
    Stamp,
    WindowExpiredError,
    batch_request,
    parse_time,
    stamp,
)
from raxx_md_client.replay import ReplayItem
from raxx_md_client.replay import replay as replay_session

log = logging.getLogger(__name__)

MODELS: dict[tuple[AssetClass, Channel], type[BaseModel]] = {
    (AssetClass.STOCKS, Channel.QUOTES): Quote,
    (AssetClass.STOCKS, Channel.TRADES): Trade,
    (AssetClass.STOCKS, Channel.BARS): Bar,
    (AssetClass.STOCKS, Channel.DAILYBARS): Bar,
    (AssetClass.STOCKS, Channel.STATUSES): TradingStatus,
    (AssetClass.STOCKS, Channel.CORRECTIONS): TradeCorrection,
    (AssetClass.STOCKS, Channel.CANCELS): TradeCancel,
    (AssetClass.STOCKS, Channel.LULDS): Luld,
    (AssetClass.STOCKS, Channel.IMBALANCES): Imbalance,
    (AssetClass.OPTIONS, Channel.QUOTES): OptionQuote,
    (AssetClass.OPTIONS, Channel.TRADES): OptionTrade,
}

CredentialSource = Callable[[str], Awaitable[Credential]]
"""Given our NATS user public key, return a fresh credential (e.g. TierGateClient.issue)."""


ALL_SYMBOLS = "*"
"""`subscribe(["*"])`: every symbol of the channel (a wildcard subscription, no lease)."""

Item = BaseModel | Gap
"""What the client yields: a decoded contract model, or a `Gap` where messages are missing."""


@dataclass(frozen=True)
class Wanted:
    """One (asset, channel, symbol) the caller subscribed to (`*`: every symbol)."""

    asset: AssetClass
    channel: Channel
    symbol: str


@dataclass
class _Track:
    """One subscription pattern (a subject, or a wildcard) and how far it was delivered."""

    pattern: str
    model: type[BaseModel]
    since: dt.datetime
    """When it was subscribed: read back from here when nothing was delivered yet."""
    edge: int = 0
    """Highest stream sequence delivered on the pattern."""
    mark: int | None = None
    """`edge` when the connection dropped (or a swap began): read back from here, since a
    wildcard's other subjects may have moved `edge` past what was missed meanwhile."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class _Control:
    """A pump instruction: read back every subscription (`pattern` None) or one from `start`."""

    reason: str
    pattern: str | None = None
    start: dt.datetime | None = None


_Ingress = tuple[str, Msg] | _Control
_Queued = tuple[type[BaseModel], str, bytes] | Gap | MdClientError


class MdClient:
    """Subscribe by symbol and channel; rt or delayed is chosen by the credential's tier."""

    def __init__(
        self,
        nats_url: str,
        credentials: CredentialSource,
        *,
        consumer_id: str | None = None,
        lease_seconds: int = 60,
        refresh_fraction: float = 0.75,
        queue_size: int = 10_000,
        registry: CollectorRegistry | None = None,
        batch: int = 2_000,
        read_timeout: float = 5.0,
        reconnect_time_wait: float = 1.0,
    ) -> None:
        self.nats_url = nats_url
        self.consumer_id = consumer_id or f"md-client-{uuid.uuid4().hex[:12]}"
        self._source = credentials
        self._seed = new_user_seed()
        self._lease_seconds = lease_seconds
        self._refresh_fraction = refresh_fraction
        # Payloads are queued undecoded and decoded by `next()`: the pump's work per message
        # stays small (a recovered range is queued as fast as it is read), and decoding is paid
        # once, by the consumer, at its own pace.
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(queue_size)
        self._ingress: asyncio.Queue[_Ingress] = asyncio.Queue()
        self._book = SequenceBook()
        self._tracks: dict[str, _Track] = {}
        self._reads: list[tuple[str, asyncio.Queue[Msg | MdClientError]]] = []
        self._batch = batch
        self._read_timeout = read_timeout
        self._reconnect_time_wait = reconnect_time_wait
        self.metrics = ClientMetrics(registry)
        self._wanted: dict[Wanted, None] = {}
        self._nc: Client | None = None
        self._subs: list[Subscription] = []
        self._cred: Credential | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._swap_lock = asyncio.Lock()
        self._closing = False
        self.last_interest: dict[AssetClass, InterestReply | ErrorReply] = {}
        self.renewals = 0

    # -- public API ---------------------------------------------------------------------------

    @property
    def credential(self) -> Credential:
        """The credential in use."""
        if self._cred is None:
            raise RuntimeError("MdClient is not started")
        return self._cred

    @property
    def tier(self) -> str:
        """The tier of the credential in use."""
        return self.credential.tier

    async def start(self) -> None:
        """Get a credential and connect; starts the renewal and lease tasks."""
        cred = await self._source(public_key(self._seed))
        self._nc, self._subs = await self._open(cred, self._seed)
        self._cred = cred
        self._tasks = [
            asyncio.create_task(self._pump(), name="md-client:pump"),
            asyncio.create_task(self._renew_loop(), name="md-client:renew"),
            asyncio.create_task(self._lease_loop(), name="md-client:leases"),
        ]

    async def subscribe(
        self,
        symbols: Iterable[str],
        *,
        asset: AssetClass = AssetClass.STOCKS,
        channels: Iterable[Channel] = (Channel.QUOTES,),
        trade_companions: bool = True,
        start: dt.datetime | None = None,
    ) -> InterestReply | ErrorReply | None:
        """Subscribe to `symbols` on `channels` and declare interest (lease) with the hub.

        With `start` (an aware datetime inside the capture window), everything since `start`
        is delivered first, then live, without a seam: the live subscription is made first and
        its messages wait while the history is read, then duplicates are dropped by sequence.
        A `start` older than the window holds raises `WindowExpiredError` (nothing subscribed).
        `"*"` as a symbol subscribes every symbol of the channel (no lease is declared for it).

        Stock `trades` bring `corrections` and `cancels` along unless `trade_companions` is
        False: a fill or last price taken from a print must be reversible when it is busted.
        The reply's `accepted` lists only what Alpaca acknowledged; `pending` what it has not
        yet (renewals report it), `rejected` what was refused and why.
        """
        chans = [Channel(c) for c in channels]
        if trade_companions and asset is AssetClass.STOCKS and Channel.TRADES in chans:
            chans += [c for c in TRADE_COMPANIONS if c not in chans]
        added = [Wanted(asset, c, s) for s in symbols for c in chans]
        added = [w for w in dict.fromkeys(added) if w not in self._wanted]
        for w in added:
            if w.symbol != ALL_SYMBOLS:
                subjects.market(
                    self.credential.paths[w.asset], w.asset, w.channel, w.symbol
                )  # validate
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be a timezone-aware datetime")
        if start is not None:
            for stream in {subjects.stream_of(self.subject_for(w)) for w in added}:
                await self._check_window(stream, start)
        nc = self._require_nc()
        tracks = self._ensure_tracks(added)
        if start is not None:
            for t in tracks:
                t.ready.clear()
        for w in added:
            self._wanted[w] = None
        if start is not None:
            for t in tracks:  # queued before the live subscription: the history goes first
                self._ingress.put_nowait(_Control("start", t.pattern, start))
        self._subs.extend([await self._sub(nc, w) for w in added])
        await nc.flush()
        for t in tracks:
            t.ready.set()
        return await self._declare(asset)

    def subject_for(self, w: Wanted) -> str:
        """The subject (or pattern, for `*`) `w` maps to under the current tier."""
        path = self.credential.paths[w.asset]
        if w.symbol == ALL_SYMBOLS:
            return subjects.market_pattern(path, w.asset, w.channel)
        return subjects.market(path, w.asset, w.channel, w.symbol)

    @property
    def positions(self) -> dict[str, int]:
        """Highest stream sequence delivered per subject (the high-water marks)."""
        return dict(self._book.last)

    async def __aiter__(self) -> AsyncIterator[Item]:
        """Decoded contract models (Quote, Trade, Bar, ...) as they arrive, and `Gap` items.

        Raises `RecoveryDeniedError` where the server refused to read a missed range back."""
        while True:
            yield await self.next()

    async def next(self) -> Item:
        """The next message or `Gap` (wrap in `asyncio.timeout` to bound the wait)."""
        while True:
            item = await self._queue.get()
            if isinstance(item, MdClientError):
                raise item
            if isinstance(item, Gap):
                return item
            model, subject, data = item
            try:
                return decode(model, data)
            except DecodeError as exc:
                log.warning("undecodable message on %s: %s", subject, exc)

    def recover(self) -> None:
        """Read every subscription back from its high-water mark now (done by itself after a
        reconnect or a credential swap)."""
        self._ingress.put_nowait(_Control("recover"))

    def replay(
        self,
        date: dt.date,
        symbols: Iterable[str],
        *,
        asset: AssetClass = AssetClass.STOCKS,
        channels: Iterable[Channel] = (Channel.QUOTES, Channel.TRADES),
        start: dt.datetime | None = None,
        speed: float | None = None,
        decode_events: bool = True,
    ) -> AsyncIterator[ReplayItem]:
        """Replay `date`'s recorded session (see :mod:`raxx_md_client.replay`): messages in
        original order with their original timestamps, progress, then the end marker."""
        cred = self.credential
        return replay_session(
            self._require_nc(), cred.tier, cred.inbox_prefix.split(".")[1], date, symbols,
            asset=asset, channels=channels, start=start, speed=speed, decode_events=decode_events,
        )  # fmt: skip

    async def renew(self) -> None:
        """Swap to a fresh credential now (normally done at ~75% of its lifetime)."""
        async with self._swap_lock:
            await self._swap_fresh()

    async def _swap_fresh(self) -> None:
        # A new key per credential: a revoked key stays revoked for every JWT issued up to
        # the revocation second, so reusing it could be refused right after a downgrade.
        seed = new_user_seed()
        cred = await self._source(public_key(seed))
        await self._swap(cred, seed)

    async def close(self) -> None:
        """Release leases, stop tasks, close the connection."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                for asset in {w.asset for w in self._wanted}:
                    await self._declare(asset, release=True)
            await self._nc.drain()
        elif self._nc is not None:
            await self._nc.close()

    # -- connections --------------------------------------------------------------------------

    def _require_nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("MdClient is not started")
        return self._nc

    async def _open(self, cred: Credential, seed: bytes) -> tuple[Client, list[Subscription]]:
        nc: Client = FastHeadersClient()
        creds = RawCredentials(_creds_text(cred.jwt, seed.decode()))

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)
            text = str(exc).lower()
            if "permissions violation" in text:
                for subject, q in list(self._reads):
                    if f'"{subject.lower()}"' in text:
                        stream = subject.rsplit(".", 1)[-1]
                        q.put_nowait(RecoveryDeniedError(stream, subject, str(exc)))

        async def on_disconnected() -> None:
            if nc is self._nc:
                self._mark_tracks()

        async def on_reconnected() -> None:
            if nc is self._nc:
                self._ingress.put_nowait(_Control("reconnected"))

        async def on_closed() -> None:
            if nc is self._nc and not self._closing:
                log.warning("connection closed by the server (%s); renewing", nc.last_error)
                asyncio.create_task(self._recover())  # noqa: RUF006 - tracked via _swap_lock

        try:
            await nc.connect(
                self.nats_url,
                user_credentials=creds,
                inbox_prefix=cred.inbox_prefix,
                error_cb=on_error,
                closed_cb=on_closed,
                reconnected_cb=on_reconnected,
                disconnected_cb=on_disconnected,
                name=self.consumer_id,
                connect_timeout=3,
                # A few quick retries with the same JWT; past that (or on an auth error, which
                # a retry with the same JWT cannot fix) the closed callback fetches a new
                # credential and reconnects with backoff.
                max_reconnect_attempts=3,
                reconnect_time_wait=self._reconnect_time_wait,  # type: ignore[arg-type]
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        prev, self._cred = self._cred, cred
        try:
            self._ensure_tracks(list(self._wanted))
            subs = [await self._sub(nc, w) for w in self._wanted]
        finally:
            self._cred = prev
        await nc.flush()
        return nc, subs

    def _ensure_tracks(self, wanted: list[Wanted]) -> list[_Track]:
        """The tracks of `wanted` under the current credential (created when new)."""
        out: list[_Track] = []
        for w in wanted:
            pattern = self.subject_for(w)
            track = self._tracks.get(pattern)
            if track is None:
                track = _Track(pattern, MODELS[(w.asset, w.channel)], dt.datetime.now(dt.UTC))
                track.ready.set()
                self._tracks[pattern] = track
            out.append(track)
        return out

    def _mark_tracks(self) -> None:
        for t in self._tracks.values():
            if t.mark is None:
                t.mark = t.edge

    def _prune_tracks(self) -> None:
        """After a tier change: forget the tracks (and positions) of the old path."""
        keep = {self.subject_for(w) for w in self._wanted}
        for pattern in [p for p in self._tracks if p not in keep]:
            del self._tracks[pattern]
        self._book.forget(keep)

    async def _sub(self, nc: Client, w: Wanted) -> Subscription:
        pattern = self.subject_for(w)

        async def on_msg(msg: Msg) -> None:
            self._ingress.put_nowait((pattern, msg))

        return await nc.subscribe(pattern, cb=on_msg, pending_msgs_limit=0, pending_bytes_limit=0)

    async def _swap(self, cred: Credential, seed: bytes) -> None:
        """Overlap: open + subscribe the new connection, then retire the old one."""
        self._mark_tracks()
        new_nc, new_subs = await self._open(cred, seed)
        old = self._nc
        self._nc, self._subs, self._cred, self._seed = new_nc, new_subs, cred, seed
        self.renewals += 1
        self._prune_tracks()
        self._ingress.put_nowait(_Control("swap"))
        if old is not None and not old.is_closed:
            with contextlib.suppress(Exception):
                await old.drain()
        for asset in {w.asset for w in self._wanted}:
            with contextlib.suppress(Exception):
                await self._declare(asset)

    async def _recover(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                async with self._swap_lock:
                    if self._nc is not None and self._nc.is_connected:
                        return
                    await self._swap_fresh()
                log.info("reconnected with a new credential (tier %s)", self.tier)
                return
            except Exception as exc:
                log.warning("renewal failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _renew_loop(self) -> None:
        while True:
            due = self.credential.refresh_at(self._refresh_fraction)
            await asyncio.sleep(max(0.05, (due - dt.datetime.now(dt.UTC)).total_seconds()))
            try:
                await self.renew()
            except Exception as exc:
                log.warning("credential renewal failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    # -- the pump: every message, live or read back, in order --------------------------------

    async def _pump(self) -> None:
        while True:
            item = await self._ingress.get()
            try:
                if isinstance(item, _Control):
                    await self._control(item)
                else:
                    await self._live(*item)
            except asyncio.CancelledError:
                raise
            except MdClientError as exc:
                await self._queue.put(exc)
            except Exception as exc:  # a bug must surface, not stop delivery silently
                log.exception("md-client pump failed on %r", item)
                await self._queue.put(MdClientError(f"internal error: {exc!r}"))

    async def _emit(self, track: _Track, st: Stamp, data: bytes) -> None:
        self._book.delivered(st.subject, st.seq)
        if st.seq > track.edge:
            track.edge = st.seq
        item = (track.model, st.subject, data)
        if self._queue.full():
            await self._queue.put(item)  # the application is behind: wait, never drop
        else:
            self._queue.put_nowait(item)

    async def _live(self, pattern: str, msg: Msg) -> None:
        track = self._tracks.get(pattern)
        if track is None:  # a path we no longer read (after a tier change)
            return
        st = stamp(msg)
        if st is None:
            await self._unstamped(track, msg)
            return
        if self._book.is_duplicate(st.subject, st.seq):
            self.metrics.duplicates.inc()
            return
        frm = self._book.missing_after(st.subject, st.last_seq, track.edge)
        if frm is None:
            await self._emit(track, st, msg.data)
            return
        await self._fill(track, st.subject, st.stream, frm, live=(st, msg.data))

    async def _unstamped(self, track: _Track, msg: Msg) -> None:
        # Not from a capture stream (no sequence): nobody may publish on md.* but the capture
        # streams' republish, so this happens only on a server without the capture; delivered
        # as is, with neither gap detection nor de-duplication.
        await self._queue.put((track.model, msg.subject, msg.data))

    async def _control(self, ctl: _Control) -> None:
        if ctl.start is not None and ctl.pattern is not None:
            track = self._tracks.get(ctl.pattern)
            if track is None:
                return
            await track.ready.wait()
            await self._read_into(track, track.pattern, start=ctl.start)
            return
        for track in list(self._tracks.values()):
            if track.pattern not in self._tracks:
                continue
            stream = subjects.stream_of(track.pattern)
            floor = track.edge if track.mark is None else track.mark
            track.mark = None
            try:
                if floor:
                    await self._fill(track, track.pattern, stream, floor + 1, live=None)
                else:
                    await self._read_into(track, track.pattern, start=track.since)
            except RecoveryDeniedError as exc:
                await self._queue.put(exc)
            except RecoveryError as exc:
                if exc.status == "503":  # no capture stream (yet): nothing was stored to miss
                    log.info("no capture stream for %s: %s", track.pattern, exc)
                    continue
                log.warning("could not read %s back (%s): %s", track.pattern, ctl.reason, exc)
                self.metrics.gaps.labels("unrecoverable").inc()
                await self._queue.put(Gap(track.pattern, stream, floor + 1, 0, GapReason.FAILED))

    async def _read_into(self, track: _Track, pattern: str, *, start: dt.datetime) -> None:
        """Deliver what the stream holds on `pattern` from `start` (no gap check: history)."""
        t0 = time.monotonic()
        count = 0
        async with contextlib.aclosing(
            self._read(subjects.stream_of(pattern), pattern, start=start)
        ) as pages:
            async for page in pages:
                for st, data in page:
                    if self._book.is_duplicate(st.subject, st.seq):
                        self.metrics.duplicates.inc()
                        continue
                    await self._emit(track, st, data)
                    count += 1
        self.metrics.recovered.inc(count)
        if count:
            self.metrics.recovery_seconds.observe(time.monotonic() - t0)

    async def _fill(
        self,
        track: _Track,
        pattern: str,
        stream: str,
        frm: int,
        *,
        live: tuple[Stamp, bytes] | None,
    ) -> None:
        """Read `pattern` back from sequence `frm` and deliver it; the live message that
        revealed the gap (if any) goes in its place in sequence order."""
        t0 = time.monotonic()
        count = 0
        gap = False
        pending = live
        try:
            first = True
            async with contextlib.aclosing(self._read(stream, pattern, seq=frm)) as pages:
                async for page in pages:
                    if first and (not page or page[0][0].seq > frm):
                        gap = await self._check_head(pattern, stream, frm)
                    first = False
                    for st, data in page:
                        if pending is not None and st.seq >= pending[0].seq:
                            break
                        if self._book.is_duplicate(st.subject, st.seq):
                            self.metrics.duplicates.inc()
                            continue
                        await self._emit(track, st, data)
                        count += 1
                    else:
                        continue
                    break  # reached the live message: the rest arrives live
        except RecoveryDeniedError:
            self.metrics.gaps.labels("denied").inc()
            if pending is not None:
                await self._emit(track, pending[0], pending[1])
            raise
        except RecoveryError as exc:
            if pending is None:
                raise
            log.warning("could not read %s back from %d: %s", pattern, frm, exc)
            to = pending[0].last_seq or pending[0].seq - 1
            await self._queue.put(Gap(pending[0].subject, stream, frm, to, GapReason.FAILED))
            gap = True
        if pending is not None:
            st = pending[0]
            last = self._book.last.get(st.subject, track.edge)
            if not gap and st.last_seq is not None and last < st.last_seq:
                await self._queue.put(
                    Gap(st.subject, stream, last + 1, st.last_seq, GapReason.MISSING)
                )
                gap = True
            if not self._book.is_duplicate(st.subject, st.seq):
                await self._emit(track, st, pending[1])
        self.metrics.recovered.inc(count)
        if count or gap or live is not None:
            self.metrics.gaps.labels("unrecoverable" if gap else "recovered").inc()
            self.metrics.recovery_seconds.observe(time.monotonic() - t0)

    async def _check_head(self, pattern: str, stream: str, frm: int) -> bool:
        """Whether the stream dropped messages at `frm` (retention): then emit a `Gap`."""
        head = await self._first_at(stream, frm)
        if head is None or head.seq <= frm:
            return False
        await self._queue.put(Gap(pattern, stream, frm, head.seq - 1, GapReason.EXPIRED))
        return True

    async def _first_at(self, stream: str, seq: int) -> Stamp | None:
        """The first message the stream still holds at or after `seq` (any subject)."""
        root = subjects.CAPTURE_PREFIX + "." + ".".join(_stream_root(stream))
        async with contextlib.aclosing(
            self._read(stream, root, seq=seq, batch=1, capture=True)
        ) as pages:
            async for page in pages:
                return page[0][0] if page else None
        return None

    async def _check_window(self, stream: str, start: dt.datetime) -> None:
        head = await self._first_at(stream, 1)
        if head is None or head.seq <= 1:
            return  # nothing dropped yet: the whole history is there
        first_time = parse_time(head.time)
        if first_time > start:
            raise WindowExpiredError(stream, start, first_time)

    async def _read(
        self,
        stream: str,
        pattern: str,
        *,
        seq: int | None = None,
        start: dt.datetime | None = None,
        batch: int | None = None,
        capture: bool = False,
    ) -> AsyncGenerator[list[tuple[Stamp, bytes]]]:
        """Pages of a batch direct get on `pattern` from `seq` or `start`, up to the end."""
        nc = self._require_nc()
        api = subjects.direct_get(stream)
        filt = pattern if capture else subjects.to_capture(pattern)
        inbox = nc.new_inbox()
        # No callback: the replies are read straight from the subscription's own queue (a
        # callback per message cost one more queue hop and coroutine, ~15 % of a range read
        # back). Its byte accounting is off (`pending_bytes_limit=0`) since nothing drains it;
        # a permission refusal is put on the same queue (`on_error`).
        sub = await nc.subscribe(inbox, pending_msgs_limit=0, pending_bytes_limit=0)
        q: asyncio.Queue[Msg | MdClientError] = sub._pending_queue  # type: ignore[assignment]
        self._reads.append((api, q))
        size = batch or self._batch
        body = batch_request(filt, seq=seq, start=start, batch=size)
        try:
            while True:
                await nc.publish(api, body, reply=inbox)
                page: list[tuple[Stamp, bytes]] = []
                pending = 0
                while True:
                    if q.empty():
                        try:
                            msg = await asyncio.wait_for(q.get(), self._read_timeout)
                        except TimeoutError as exc:
                            raise RecoveryError(stream, "timeout", "no answer") from exc
                    else:
                        msg = q.get_nowait()
                    if isinstance(msg, MdClientError):
                        raise msg
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "204":
                        pending = int(headers.get(subjects.HDR_NUM_PENDING, "0"))
                        break
                    if status == "404":
                        break
                    if status:
                        raise RecoveryError(stream, status, headers.get("Description", ""))
                    st = stamp(msg)
                    if st is not None:
                        page.append((st, msg.data))
                yield page
                if not page or pending == 0 or batch is not None:
                    return
                body = batch_request(filt, seq=page[-1][0].seq + 1, batch=size)
        finally:
            self._reads.remove((api, q))
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- interest leases ----------------------------------------------------------------------

    async def _declare(
        self, asset: AssetClass, *, release: bool = False
    ) -> InterestReply | ErrorReply | None:
        wanted = [w for w in self._wanted if w.asset is asset and w.symbol != ALL_SYMBOLS]
        if not wanted:
            return None
        request = InterestRequest(
            consumer_id=self.consumer_id,
            asset_class=asset,
            channels=tuple(dict.fromkeys(w.channel for w in wanted)),
            symbols=tuple(dict.fromkeys(w.symbol for w in wanted)),
            lease_seconds=self._lease_seconds,
            release=release,
        )
        try:
            msg = await self._require_nc().request(
                self.credential.interest_subject, encode(request), timeout=2
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError) as exc:
            log.warning("no answer to the interest request (is the hub running?): %s", exc)
            return None
        reply: InterestReply | ErrorReply
        try:
            reply = decode(InterestReply, msg.data)
        except DecodeError:
            reply = decode(ErrorReply, msg.data)
        self.last_interest[asset] = reply
        return reply

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._lease_seconds / 2))
            for asset in {w.asset for w in self._wanted}:
                try:
                    await self._declare(asset)
                except Exception as exc:
                    log.warning("lease renewal failed: %s", exc)


def _stream_root(stream: str) -> tuple[str, str, str]:
    """`MD_RT_STOCKS` -> (`rt`, `stocks`, `>`): the capture subjects of a stream."""
    _, path, asset = stream.lower().split("_", 2)
    return path, asset, ">"


def _creds_text(jwt: str, seed: str) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
