"""`md.ctl.interest`: consumers lease symbols; the table lives in NATS KV (one key per asset).

Every replica answers (queue group), so interest keeps working while leadership moves; the
revision-checked update makes the cap hold across replicas. The leader reads the same table
to decide what to hold upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from raxx_contracts import (
    AssetClass,
    DecodeError,
    ErrorReply,
    InterestReply,
    InterestRequest,
    NanoDatetime,
    decode,
    encode,
    subjects,
)

from market_data_hub.domain import Clock, LeaseTable
from market_data_hub.metrics import Metrics
from market_data_hub.settings import Settings

log = logging.getLogger(__name__)
QUEUE = "market-data-hub"


def table_key(asset: AssetClass) -> str:
    """KV key of an asset class's lease table."""
    return f"leases.{asset}"


class InterestStore:
    """Read and update lease tables in KV with optimistic concurrency."""

    def __init__(self, kv: KeyValue, settings: Settings, clock: Clock) -> None:
        self.kv = kv
        self.settings = settings
        self.clock = clock
        self.changed = asyncio.Event()

    def cap(self, asset: AssetClass) -> int:
        """Symbol cap of the plan for `asset`."""
        s = self.settings
        return s.symbol_cap if asset is AssetClass.STOCKS else s.option_symbol_cap

    async def load(self, asset: AssetClass) -> tuple[LeaseTable, int]:
        """The table and its KV revision (0 when absent)."""
        try:
            entry = await self.kv.get(table_key(asset))
        except (KeyNotFoundError, NotFoundError):
            return LeaseTable(asset), 0
        return LeaseTable.from_json(asset, entry.value), entry.revision or 0

    async def wait_usable(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once the lease bucket answers reads (JetStream can lag a just-created bucket:
        its API answers `no responders` for a moment). Raises the last error after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.load(AssetClass.STOCKS)
                return
            except (NoRespondersError, TimeoutError, NatsTimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def handle(self, req: InterestRequest) -> InterestReply:
        """Apply one request; retry on a concurrent update."""
        asset = req.asset_class
        lease = min(req.lease_seconds, self.settings.max_lease_seconds)
        for _ in range(20):
            table, rev = await self.load(asset)
            outcome = table.apply(
                req.consumer_id, req.symbols, req.channels, lease, self.clock.now_ns(),
                self.cap(asset), release=req.release,
            )  # fmt: skip
            try:
                if rev:
                    await self.kv.update(table_key(asset), table.to_json(), last=rev)
                else:
                    await self.kv.create(table_key(asset), table.to_json())
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
                continue
            except NoRespondersError:  # JetStream momentarily not answering: retry shortly
                await asyncio.sleep(0.1)
                continue
            self.changed.set()
            exp = outcome.expires_ns
            return InterestReply(
                accepted=outcome.accepted,
                rejected=outcome.rejected,
                lease_expires_at=NanoDatetime.from_epoch_ns(exp) if exp else None,
                subscribed=outcome.subscribed,
                symbol_cap=self.cap(asset),
            )
        raise RuntimeError("lease table too contended")


class InterestResponder:
    """Answers `md.ctl.interest` with InterestReply, or ErrorReply for a malformed request."""

    def __init__(self, nc: Client, store: InterestStore, metrics: Metrics) -> None:
        self.nc = nc
        self.store = store
        self.metrics = metrics
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe in the hub's queue group."""
        self._sub = await self.nc.subscribe(subjects.INTEREST, queue=QUEUE, cb=self._on_msg)
        await self.nc.flush()  # registered on the server before anyone is told we are up

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            req = decode(InterestRequest, msg.data)
        except DecodeError as exc:
            self.metrics.interest_requests.labels("malformed").inc()
            reply = encode(ErrorReply(error="bad_request", message=str(exc)[:500]))
            await self.nc.publish(msg.reply, reply)
            return
        try:
            out = await self.store.handle(req)
        except Exception as exc:
            log.exception("interest request failed")
            self.metrics.interest_requests.labels("error").inc()
            err = ErrorReply(error="unavailable", message=f"interest not recorded: {exc}")
            await self.nc.publish(msg.reply, encode(err))
            return
        self.metrics.interest_requests.labels("ok").inc()
        for r in out.rejected:
            self.metrics.rejections.labels(r.reason).inc()
        await self.nc.publish(msg.reply, encode(out))
