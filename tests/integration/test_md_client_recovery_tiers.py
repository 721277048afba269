"""md-client recovery with real tier-gate credentials on an operator-mode nats-server whose
capture streams are declared the hub's way: the server decides what a tier may read back."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import nats
import pytest
from raxx_contracts import AssetClass, Channel, Path, Quote, encode, subjects, utc_now
from raxx_md_client import Credential, MdClient, RecoveryDeniedError, TierGateClient

from tests.integration.fixtures_tier_gate import (
    TierGateStack,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]

OPEN: list[TierGateClient] = []


@pytest.fixture(autouse=True)
async def _close_tier_gate_clients() -> AsyncIterator[None]:
    yield
    while OPEN:
        await OPEN.pop().aclose()


def quote(n: int, symbol: str = "AAPL") -> bytes:
    return encode(
        Quote(symbol=symbol, timestamp=utc_now(), feed="iex", bid_price=Decimal("189.5"),
              bid_size=n, ask_price=Decimal("189.6"), ask_size=1)
    )  # fmt: skip


async def _source(stack: TierGateStack, user: str, tier: str, *, claim_rt: bool = False) -> object:
    tg = TierGateClient(stack.base_url)
    OPEN.append(tg)
    identity = await tg.dev_identity(user, tier)

    async def source(public_key: str) -> Credential:
        cred = await tg.issue(identity, public_key)
        if claim_rt:  # a tampered client that believes it may read real time
            return dataclasses.replace(cred, paths=dict.fromkeys(AssetClass, Path.RT))
        return cred

    return source


async def test_free_credential_reading_realtime_back_is_refused_by_the_server(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    hub = await stack.hub_publisher()
    before = dt.datetime.now(dt.UTC)
    await hub.publish(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL"), quote(1))
    await hub.publish(subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL"), quote(2))
    await hub.flush()
    user = unique_user()
    tampered = MdClient(stack.nats_url, await _source(stack, user, "free", claim_rt=True))  # type: ignore[arg-type]
    await tampered.start()
    with pytest.raises(RecoveryDeniedError) as denied:
        await tampered.subscribe(["AAPL"], start=before)
    assert denied.value.stream == subjects.capture_stream(Path.RT, AssetClass.STOCKS)
    await tampered.close()
    # the same tier reads its own (delayed) path back: history from `before`, then live
    honest = MdClient(stack.nats_url, await _source(stack, user, "free"))  # type: ignore[arg-type]
    await honest.start()
    await honest.subscribe(["AAPL"], start=before)
    event = await asyncio.wait_for(honest.next(), 5)
    assert isinstance(event, Quote)
    assert event.bid_size == 2
    await honest.close()
    await hub.close()


async def test_downgraded_client_reads_back_only_on_its_new_path(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    hub = await stack.hub_publisher()
    user = unique_user()
    client = MdClient(stack.nats_url, await _source(stack, user, "pro"))  # type: ignore[arg-type]
    await client.start()
    await client.subscribe(["AAPL"])
    rt = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
    delayed = subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
    await hub.publish(rt, quote(1))
    await hub.flush()
    first = await asyncio.wait_for(client.next(), 5)
    assert isinstance(first, Quote)
    assert first.bid_size == 1
    await stack.publish_tier(user, "free", version=100)
    async with asyncio.timeout(10):
        while client.tier != "free":  # noqa: ASYNC110 - bounded polling of the swap
            await asyncio.sleep(0.05)
    await hub.publish(rt, quote(2))  # the rt stream moves on; the client must not read it
    await hub.publish(delayed, quote(3))
    await hub.flush()
    event = await asyncio.wait_for(client.next(), 5)  # a denied rt read would raise here
    assert isinstance(event, Quote)
    assert event.bid_size == 3
    assert set(client.positions) == {delayed}
    await client.close()
    await hub.close()


async def test_hub_to_client_loses_nothing_across_a_nats_server_restart(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    declare = await stack.hub_publisher()  # declares the capture streams as the hub does
    await declare.close()
    client = MdClient(stack.nats_url, await _source(stack, unique_user(), "pro"),  # type: ignore[arg-type]
                      reconnect_time_wait=0.2)  # fmt: skip
    await client.start()
    await client.subscribe(["AAPL", "MSFT"])
    hub = await nats.connect(
        stack.nats_url, user_credentials=str(stack.creds("hub")), max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
    )  # fmt: skip
    js = hub.jetstream()
    total, restart_at = 2000, 700
    restarted = asyncio.Event()

    async def publish() -> None:
        for n in range(total):
            sym = ("AAPL", "MSFT")[n % 2]
            subject = subjects.to_capture(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, sym))
            while True:
                try:  # retried with the same id through the restart: stored exactly once
                    await js.publish(subject, quote(n, sym), headers={"Nats-Msg-Id": str(n)})
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            if n == restart_at:
                restarted.set()
            if n % 20 == 0:
                await asyncio.sleep(0.02)

    task = asyncio.create_task(publish())
    await restarted.wait()
    await asyncio.to_thread(stack.restart_nats)
    await task
    got: list[Quote] = []
    async with asyncio.timeout(30):
        while len(got) < total:
            event = await client.next()
            assert isinstance(event, Quote)
            got.append(event)
    nums = [q.bid_size for q in got]
    assert sorted(nums) == list(range(total))  # none lost, none duplicated
    for sym in ("AAPL", "MSFT"):
        per = [q.bid_size for q in got if q.symbol == sym]
        assert per == sorted(per)
    await client.close()
    await hub.close()
