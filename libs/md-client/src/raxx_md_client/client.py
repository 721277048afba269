"""`MdClient`: market data over NATS with a tier-gate credential that renews itself.

Guarantee across a credential renewal: the new connection is opened and its subscriptions are
confirmed by the server (flush) *before* the old connection is closed, and messages seen on both
during the overlap are dropped by a (subject, payload) window. So every message published while
the client is connected is delivered once, even across renewals (ordering can interleave
briefly during the overlap). Core NATS is at-most-once: messages published while no connection
is up (the server cut us off after a revocation, or the network failed) are not recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import nats
from nats.aio.client import Client, RawCredentials
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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
from raxx_md_client.dedupe import DedupeWindow
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


@dataclass(frozen=True)
class Wanted:
    """One (asset, channel, symbol) the caller subscribed to."""

    asset: AssetClass
    channel: Channel
    symbol: str


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
    ) -> None:
        self.nats_url = nats_url
        self.consumer_id = consumer_id or f"md-client-{uuid.uuid4().hex[:12]}"
        self._source = credentials
        self._seed = new_user_seed()
        self._lease_seconds = lease_seconds
        self._refresh_fraction = refresh_fraction
        self._queue: asyncio.Queue[BaseModel] = asyncio.Queue(queue_size)
        self._wanted: dict[Wanted, None] = {}
        self._nc: Client | None = None
        self._subs: list[Subscription] = []
        self._cred: Credential | None = None
        self._dedupe = DedupeWindow()
        self._dedupe_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._swap_lock = asyncio.Lock()
        self._closing = False
        self.last_interest: dict[AssetClass, InterestReply | ErrorReply] = {}
        self.dropped = 0
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
    ) -> InterestReply | ErrorReply | None:
        """Subscribe to `symbols` on `channels` and declare interest (lease) with the hub.

        Stock `trades` bring `corrections` and `cancels` along unless `trade_companions` is
        False: a fill or last price taken from a print must be reversible when it is busted.
        The reply's `accepted` lists only what Alpaca acknowledged; `pending` what it has not
        yet (renewals report it), `rejected` what was refused and why.
        """
        chans = [Channel(c) for c in channels]
        if trade_companions and asset is AssetClass.STOCKS and Channel.TRADES in chans:
            chans += [c for c in TRADE_COMPANIONS if c not in chans]
        added = [Wanted(asset, c, s) for s in symbols for c in chans]
        for w in added:
            subjects.market(
                self.credential.paths[w.asset], w.asset, w.channel, w.symbol
            )  # validate
            self._wanted[w] = None
        nc = self._require_nc()
        self._subs.extend([await self._sub(nc, w) for w in added])
        await nc.flush()
        return await self._declare(asset)

    def subject_for(self, w: Wanted) -> str:
        """The subject `w` maps to under the current tier (rt or delayed)."""
        return subjects.market(self.credential.paths[w.asset], w.asset, w.channel, w.symbol)

    async def __aiter__(self) -> AsyncIterator[BaseModel]:
        """Decoded contract models (Quote, Trade, Bar, ...) as they arrive."""
        while True:
            yield await self._queue.get()

    async def next(self) -> BaseModel:
        """The next message (wrap in `asyncio.timeout` to bound the wait)."""
        return await self._queue.get()

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
        nc = Client()
        creds = RawCredentials(_creds_text(cred.jwt, seed.decode()))

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

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
                name=self.consumer_id,
                connect_timeout=3,
                # A few quick retries with the same JWT; past that (or on an auth error, which
                # a retry with the same JWT cannot fix) the closed callback fetches a new
                # credential and reconnects with backoff.
                max_reconnect_attempts=3,
                reconnect_time_wait=1,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        prev, self._cred = self._cred, cred
        try:
            subs = [await self._sub(nc, w) for w in self._wanted]
        finally:
            self._cred = prev
        await nc.flush()
        return nc, subs

    async def _sub(self, nc: Client, w: Wanted) -> Subscription:
        model = MODELS[(w.asset, w.channel)]

        async def on_msg(msg: Msg) -> None:
            if time.monotonic() < self._dedupe_until and not self._dedupe.first_time(
                msg.subject, msg.data
            ):
                return
            try:
                event = decode(model, msg.data)
            except DecodeError as exc:
                log.warning("undecodable message on %s: %s", msg.subject, exc)
                return
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

        return await nc.subscribe(self.subject_for(w), cb=on_msg)

    async def _swap(self, cred: Credential, seed: bytes) -> None:
        """Overlap: open + subscribe the new connection, then retire the old one."""
        self._dedupe_until = time.monotonic() + 30.0
        new_nc, new_subs = await self._open(cred, seed)
        old = self._nc
        self._nc, self._subs, self._cred, self._seed = new_nc, new_subs, cred, seed
        self.renewals += 1
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

    # -- interest leases ----------------------------------------------------------------------

    async def _declare(
        self, asset: AssetClass, *, release: bool = False
    ) -> InterestReply | ErrorReply | None:
        wanted = [w for w in self._wanted if w.asset is asset]
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


def _creds_text(jwt: str, seed: str) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
