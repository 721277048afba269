"""The interest responder's faststream subscriber on TestNatsBroker (no server): replies only
inside the requester's own inbox, per-user rate limit, users answered concurrently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from faststream.nats import NatsBroker, TestNatsBroker
from raxx_contracts import (
    AssetClass,
    ErrorReply,
    InterestReply,
    InterestRequest,
    decode,
    encode,
    subjects,
)

from tests.support.hub_fakes import Env, FakeStore


def request(symbols: tuple[str, ...] = ("AAPL",)) -> bytes:
    return encode(
        InterestRequest(
            consumer_id="c1", asset_class=AssetClass.STOCKS, symbols=symbols, channels=("quotes",)
        )
    )


async def until(cond: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def wire(env: Env, store: object) -> tuple[NatsBroker, list[tuple[str, bytes]]]:
    """Give the (unstarted) hub's responder a store and a publisher that records replies."""
    sent: list[tuple[str, bytes]] = []

    async def publish(subject: str, body: bytes) -> None:
        sent.append((subject, body))

    env.hub.responder.store = store  # type: ignore[assignment]
    env.hub.responder.publish = publish
    broker: NatsBroker = env.app.state.broker
    return broker, sent


def counted(env: Env, outcome: str) -> float:
    value = env.hub.metrics.registry.get_sample_value(
        "mdh_interest_requests_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_request_is_answered_in_the_requesters_own_inbox(env: Env) -> None:
    store = FakeStore()
    broker, sent = wire(env, store)
    token = subjects.user_token("alice")
    inbox = f"{subjects.user_inbox_prefix('alice')}.r1"
    async with TestNatsBroker(broker) as br:
        await br.publish(request(), subjects.interest("pro", token), reply_to=inbox)
        await until(lambda: bool(sent))
    ((subject, body),) = sent
    assert subject == inbox
    assert decode(InterestReply, body).accepted == ("AAPL",)
    assert store.seen[0][:2] == ("pro", token)  # tier and owner from the subject
    assert counted(env, "ok") == 1


async def test_a_foreign_reply_subject_is_dropped_and_counted(env: Env) -> None:
    store = FakeStore()
    broker, sent = wire(env, store)
    token = subjects.user_token("alice")
    foreign = [
        f"{subjects.user_inbox_prefix('bob')}.r1",  # another user's inbox
        "md.rt.stocks.quotes.AAPL",  # market data
        "_INBOX.abc",  # a plain inbox
        f"$KV.MDH_INTEREST.owner.stocks.{token}",  # the hub's own state
    ]
    async with TestNatsBroker(broker) as br:
        for reply in foreign:
            await br.publish(request(), subjects.interest("pro", token), reply_to=reply)
        await br.publish(request(), subjects.interest("pro", token))  # no reply at all
        await asyncio.sleep(0.05)  # let any (wrong) task run
    assert sent == []
    assert store.seen == []
    assert counted(env, "foreign_reply") == len(foreign) + 1


async def test_a_flooding_user_is_rate_limited_while_another_is_answered(env: Env) -> None:
    store = FakeStore()
    broker, sent = wire(env, store)
    mallory, alice = subjects.user_token("mallory"), subjects.user_token("alice")
    m_inbox = f"{subjects.user_inbox_prefix('mallory')}.x"
    a_inbox = f"{subjects.user_inbox_prefix('alice')}.y"
    async with TestNatsBroker(broker) as br:
        for _ in range(30):
            await br.publish(request(), subjects.interest("free", mallory), reply_to=m_inbox)
        await br.publish(request(), subjects.interest("pro", alice), reply_to=a_inbox)
        await until(lambda: any(s == a_inbox for s, _ in sent))
        await until(lambda: not env.hub.responder._tasks)
    limited = [b for s, b in sent if s == m_inbox and b'"error"' in b]
    assert limited, "past the burst (10) the flooder gets rate_limited"
    assert decode(ErrorReply, limited[0]).error == "rate_limited"
    answered = [s for s, b in sent if s == m_inbox and b'"error"' not in b]
    assert len(answered) <= env.hub.settings.interest_burst
    assert counted(env, "rate_limited") == len(limited)


async def test_one_users_slow_request_delays_no_other_user(env: Env) -> None:
    release = asyncio.Event()

    class SlowForMallory(FakeStore):
        async def handle(self, tier: str, user_token: str, req: InterestRequest) -> InterestReply:
            if user_token == subjects.user_token("mallory"):
                await release.wait()  # e.g. waiting for Alpaca's acknowledgement
            return await super().handle(tier, user_token, req)

    broker, sent = wire(env, SlowForMallory())
    m_inbox = f"{subjects.user_inbox_prefix('mallory')}.x"
    a_inbox = f"{subjects.user_inbox_prefix('alice')}.y"
    async with TestNatsBroker(broker) as br:
        await br.publish(
            request(), subjects.interest("pro", subjects.user_token("mallory")), reply_to=m_inbox
        )
        await br.publish(
            request(), subjects.interest("pro", subjects.user_token("alice")), reply_to=a_inbox
        )
        await until(lambda: [s for s, _ in sent] == [a_inbox])  # alice first, mallory waits
        release.set()
        await until(lambda: len(sent) == 2)
    assert [s for s, _ in sent] == [a_inbox, m_inbox]
