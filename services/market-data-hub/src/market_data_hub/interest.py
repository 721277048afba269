"""Interest requests on `md.ctl.interest.<tier>.<user token>`: leases owned by the user.

The server lets a credential publish only on its own tier's subject with its own token (the
tier's permission template), so the subject says who asks. The responder answers only inside
that user's inbox (`_INBOX_U.<token>.`); any other reply subject is dropped and counted, never
published to. It receives and replies on the user-facing connection (identity `hub-responder`,
which may publish nothing but user-inbox replies) and keeps state over the hub's own
connection (KV bucket `<prefix>_INTEREST`).

KV layout per asset class: `owner.<asset>.<user token>` (one user's leases, bounded by its
tier's quota) and `slots.<asset>` (the symbols held for anyone, bounded by the plan's cap).
Requests arrive through a faststream core-NATS subscriber (`handlers.py`, queue group
`market-data-hub`) on the kit's control router; replies are published by the same broker.
Every replica answers (queue group); the slot table's revision-checked update makes the cap and
the tier shares hold across replicas. The leader reads the slot table to decide what to hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from raxx_contracts import (
    AssetClass,
    ContractError,
    DecodeError,
    ErrorReply,
    InterestReply,
    InterestRequest,
    NanoDatetime,
    Rejection,
    TierPolicy,
    UnknownTierError,
    UpstreamHeld,
    decode,
    encode,
    subjects,
)

from market_data_hub.domain import Clock, Limits, OwnerLeases, SlotTable, apply_request
from market_data_hub.domain.leases import InterestOutcome
from market_data_hub.domain.ratelimit import KeyedBuckets
from market_data_hub.metrics import Metrics
from market_data_hub.settings import Settings

log = logging.getLogger(__name__)
QUEUE = "market-data-hub"
MAX_REQUEST_BYTES = 16 * 1024
"""Larger requests are refused before decoding (1,000 symbols of a request fit easily)."""


def slots_key(asset: AssetClass) -> str:
    """KV key of an asset class's slot table."""
    return f"slots.{asset}"


upstream_key = subjects.upstream_held_key
"""KV key where the leader shares what Alpaca acknowledged and refused for `asset` (its value
is the contract `UpstreamHeld`, which eod-settler reads)."""


@dataclass(frozen=True)
class UpstreamState:
    """What Alpaca acknowledged (held symbols) and refused (symbol -> why), per asset."""

    held: frozenset[str] = frozenset()
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes | None, now_ns: int) -> UpstreamState:
        """Deserialize; refusals already over are left out."""
        if not data:
            return cls()
        rec = decode(UpstreamHeld, data)
        refused = {
            sym: f"Alpaca refused the subscription ({code} {msg})"
            for sym, (code, msg, until) in rec.refused.items()
            if until > now_ns
        }
        return cls(frozenset(rec.held), refused)


def owner_key(asset: AssetClass, user_token: str) -> str:
    """KV key of one user's leases in an asset class."""
    return f"owner.{asset}.{user_token}"


class RequestRefused(Exception):
    """A request answered with a typed ErrorReply (its message is safe to show)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InterestStore:
    """Read and update owner records and slot tables in KV with optimistic concurrency."""

    def __init__(self, kv: KeyValue, settings: Settings, clock: Clock, policy: TierPolicy) -> None:
        self.kv = kv
        self.settings = settings
        self.clock = clock
        self.policy = policy
        self.changed = asyncio.Event()

    def cap(self, asset: AssetClass) -> int:
        """Symbol cap of the plan for `asset`."""
        s = self.settings
        return s.symbol_cap if asset is AssetClass.STOCKS else s.option_symbol_cap

    async def _get(self, key: str) -> tuple[bytes | None, int]:
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None, 0
        return entry.value, entry.revision or 0

    async def _put(self, key: str, value: bytes, rev: int) -> None:
        if rev:
            await self.kv.update(key, value, last=rev)
        else:
            await self.kv.create(key, value)

    async def load(self, asset: AssetClass) -> tuple[SlotTable, int]:
        """The slot table (what to hold upstream) and its KV revision (0 when absent)."""
        data, rev = await self._get(slots_key(asset))
        return SlotTable.from_json(asset, data), rev

    async def put_upstream_state(
        self, asset: AssetClass, held: set[str], refused: dict[str, tuple[int, str, int]]
    ) -> None:
        """Leader only: publish what Alpaca acknowledged and refused (bounded by the cap and
        the refusals of the last `upstream_refusal_seconds`, newest kept)."""
        keep = sorted(refused.items(), key=lambda kv: kv[1][2])[-4 * self.cap(asset) - 100 :]
        body = encode(UpstreamHeld(held=tuple(sorted(held)), refused=dict(keep)))
        await self.kv.put(upstream_key(asset), body)

    async def upstream_state(self, asset: AssetClass) -> UpstreamState:
        """What the leader last shared about Alpaca's acknowledgements."""
        data, _ = await self._get(upstream_key(asset))
        return UpstreamState.from_json(data, self.clock.now_ns())

    async def confirm(self, asset: AssetClass, reply: InterestReply) -> InterestReply:
        """Report as accepted only what Alpaca acknowledged: wait up to `ack_wait_seconds` for
        the leader to see the acknowledgement; refused symbols are rejected, the rest pending."""
        if not reply.accepted or reply.lease_expires_at is None:
            return reply
        deadline = time.monotonic() + self.settings.ack_wait_seconds
        while True:
            state = await self.upstream_state(asset)
            open_ = [s for s in reply.accepted if s not in state.held and s not in state.refused]
            if not open_ or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        refused = [
            Rejection(symbol=s, reason="upstream_refused", message=state.refused[s])
            for s in reply.accepted
            if s in state.refused and s not in state.held
        ]
        return reply.model_copy(
            update={
                "accepted": tuple(s for s in reply.accepted if s in state.held),
                "pending": tuple(open_),
                "rejected": reply.rejected + tuple(refused),
            }
        )

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

    async def handle(self, tier: str, user_token: str, req: InterestRequest) -> InterestReply:
        """Apply one request of `user_token` at `tier`; retry on a concurrent update.

        Write order: the slot table first (revision-checked: the serialization point of the cap
        and the shares), then the owner record (revision-checked); when the owner record lost a
        race, the slot moves are undone exactly and the request is applied again.
        """
        try:
            quota = self.policy.rule(tier).interest
        except UnknownTierError:
            raise RequestRefused("not_entitled", "this credential's tier is not known") from None
        asset = req.asset_class
        limits = Limits(self.cap(asset), quota, self.settings.lease_record_max_bytes)
        lease = min(req.lease_seconds, self.settings.max_lease_seconds)
        okey = owner_key(asset, user_token)
        for _ in range(20):
            try:
                (odata, orev), (slots, srev), upstream = await asyncio.gather(
                    self._get(okey), self.load(asset), self.upstream_state(asset)
                )
                outcome = apply_request(
                    OwnerLeases.from_json(odata), slots, tier=tier, consumer=req.consumer_id,
                    symbols=req.symbols, channels=req.channels, lease_seconds=lease,
                    release=req.release, now_ns=self.clock.now_ns(), limits=limits,
                    refused=upstream.refused,
                )  # fmt: skip
                if outcome.changed:
                    await self._put(slots_key(asset), outcome.slots.to_json(), srev)
                    try:
                        await self._put(okey, outcome.owner.to_json(), orev)
                    except KeyWrongLastSequenceError:
                        await self._undo(asset, outcome)
                        raise
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
                continue
            except NoRespondersError:  # JetStream momentarily not answering: retry shortly
                await asyncio.sleep(0.1)
                continue
            if outcome.changed:
                self.changed.set()
            return self._reply(asset, outcome)
        raise RuntimeError("lease records too contended")

    async def _undo(self, asset: AssetClass, outcome: InterestOutcome) -> None:
        inverse = [d.inverse() for d in outcome.deltas]
        for _ in range(50):
            slots, rev = await self.load(asset)
            slots.apply(inverse, self.clock.now_ns())
            try:
                await self._put(slots_key(asset), slots.to_json(), rev)
                return
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
        log.error("could not undo slot moves (%d); they lapse with their leases", len(inverse))

    def _reply(self, asset: AssetClass, outcome: InterestOutcome) -> InterestReply:
        exp = outcome.expires_ns
        return InterestReply(
            accepted=outcome.accepted,
            rejected=outcome.rejected,
            lease_expires_at=NanoDatetime.from_epoch_ns(exp) if exp else None,
            subscribed=outcome.subscribed,
            symbol_cap=self.cap(asset),
        )


Publish = Callable[[str, bytes], Awaitable[None]]
"""How a reply leaves: (reply subject, body), on the user-facing connection."""


class InterestResponder:
    """Answers `md.ctl.interest.<tier>.<user>` with InterestReply, or ErrorReply (a code and a
    safe message; details only in the log). Replies only inside the requester's own inbox.

    Transport-free: `handlers.py` feeds it (subject, reply, data) from the faststream
    subscriber and gives it `publish`; `store` is attached once the KV bucket is usable."""

    def __init__(self, metrics: Metrics, settings: Settings) -> None:
        self.store: InterestStore | None = None
        self.publish: Publish | None = None
        self.metrics = metrics
        self.settings = settings
        self._rates = KeyedBuckets()
        self._queued: dict[str, tuple[asyncio.Lock, int]] = {}
        """Per user: a lock (one user's requests are answered one at a time, in order, as one
        revision-checked record cannot take concurrent writes) and how many wait or run."""
        self._slots = asyncio.Semaphore(settings.interest_max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """Cancel requests still being answered (their users retry)."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def on_request(self, subject: str, reply: str | None, data: bytes) -> None:
        """Checks that cost nothing run here, in order; answering runs in its own task, so one
        user's slow request (waiting for Alpaca's acknowledgement) never delays another's."""
        publish = self.publish
        if publish is None or self.store is None:
            return  # not started: the requester times out and retries
        try:
            who = subjects.parse_interest(subject)
        except ContractError:
            self.metrics.interest_requests.labels("foreign_subject").inc()
            return
        if not reply or not subjects.is_user_reply(reply, who.user_token):
            # Never publish where the requester points unless it is its own inbox: a reply
            # subject is not checked by the server against the requester's rights.
            self.metrics.interest_requests.labels("foreign_reply").inc()
            log.warning("interest request with a reply outside the requester's inbox dropped")
            return
        user = who.user_token
        s = self.settings
        wait = self._rates.try_take(user, s.interest_requests_per_min, s.interest_burst)
        lock, queued = self._queued.get(user) or (asyncio.Lock(), 0)
        if wait or queued >= s.interest_user_in_flight:
            self.metrics.interest_requests.labels("rate_limited").inc()
            message = f"too many interest requests; retry in {max(wait, 1.0):.0f} s"
            await publish(reply, encode(ErrorReply(error="rate_limited", message=message)))
            return
        self._queued[user] = (lock, queued + 1)
        task = asyncio.create_task(self._reply(who.tier, user, lock, data, reply, publish))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(
        self, tier: str, user: str, lock: asyncio.Lock, data: bytes, reply: str, publish: Publish
    ) -> None:
        try:
            async with lock, self._slots:
                try:
                    body = await self._answer(tier, user, data)
                except RequestRefused as exc:
                    body = encode(ErrorReply(error=exc.code, message=exc.message))
                await publish(reply, body)
        except Exception:  # the connection is closing: the user's client retries
            log.warning("interest reply not sent", exc_info=True)
        finally:
            left = self._queued[user][1] - 1
            if left:
                self._queued[user] = (lock, left)
            else:
                del self._queued[user]

    async def _answer(self, tier: str, user_token: str, data: bytes) -> bytes:
        if len(data) > MAX_REQUEST_BYTES:
            self.metrics.interest_requests.labels("malformed").inc()
            raise RequestRefused("bad_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
        try:
            req = decode(InterestRequest, data)
        except DecodeError as exc:
            self.metrics.interest_requests.labels("malformed").inc()
            log.debug("malformed interest request: %s", exc)
            raise RequestRefused(
                "bad_request", "not a valid InterestRequest (see the raxx_contracts model)"
            ) from None
        store = self.store
        if store is None:
            raise RequestRefused("unavailable", "interest not recorded; retry shortly")
        try:
            out = await store.handle(tier, user_token, req)
            if not req.release:
                out = await store.confirm(req.asset_class, out)
        except RequestRefused:
            self.metrics.interest_requests.labels("refused").inc()
            raise
        except Exception:
            log.exception("interest request failed")
            self.metrics.interest_requests.labels("error").inc()
            raise RequestRefused("unavailable", "interest not recorded; retry shortly") from None
        self.metrics.interest_requests.labels("ok").inc()
        for r in out.rejected:
            self.metrics.rejections.labels(r.reason).inc()
        return encode(out)
