"""raxx_md_client against tier-gate + an operator-mode nats-server (real servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from nats.aio.msg import Msg
from raxx_contracts import (
    AssetClass,
    Channel,
    InterestReply,
    InterestRequest,
    Quote,
    decode,
    encode,
    subjects,
    utc_now,
)
from raxx_md_client import Credential, MdClient, TierGateClient

from tests.integration.fixtures_tier_gate import (
    StackFactory,
    TierGateStack,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]


def quote(seq: int, symbol: str = "AAPL") -> bytes:
    return encode(
        Quote(symbol=symbol, timestamp=utc_now(), feed="iex", bid_price=Decimal("189.5"),
              bid_size=seq, ask_price=Decimal("189.6"), ask_size=1)
    )  # fmt: skip


OPEN: list[TierGateClient] = []


@pytest.fixture(autouse=True)
async def _close_tier_gate_clients() -> AsyncIterator[None]:
    yield
    while OPEN:
        await OPEN.pop().aclose()


async def _client(stack: TierGateStack, user: str, tier: str, **kwargs: object) -> MdClient:
    tg = TierGateClient(stack.base_url)
    OPEN.append(tg)
    identity = await tg.dev_identity(user, tier)

    async def source(public_key: str) -> Credential:
        return await tg.issue(identity, public_key)

    client = MdClient(stack.nats_url, source, **kwargs)  # type: ignore[arg-type]
    await client.start()
    return client


async def test_free_client_gets_decoded_delayed_quotes_and_declares_interest(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    hub = await stack.hub_publisher()
    responder = await stack.service("hub-responder")
    requests: list[InterestRequest] = []
    asked_on: list[str] = []

    async def answer(msg: Msg) -> None:
        req = decode(InterestRequest, msg.data)
        requests.append(req)
        asked_on.append(msg.subject)
        await msg.respond(encode(InterestReply(accepted=req.symbols, subscribed=1, symbol_cap=10)))

    await responder.subscribe(subjects.INTEREST_ANY, cb=answer)
    await responder.flush()
    user = unique_user()
    client = await _client(stack, user, "free", lease_seconds=5)
    reply = await client.subscribe(["AAPL", "BRK.B"])
    assert isinstance(reply, InterestReply)
    assert asked_on[0] == subjects.interest("free", subjects.user_token(user))
    assert requests[0].symbols == ("AAPL", "BRK.B")
    assert requests[0].consumer_id == client.consumer_id
    for sym in ("AAPL", "BRK.B"):
        await hub.publish(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, sym), quote(1, sym))
        await hub.publish(subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, sym), quote(2, sym))
    await hub.flush()
    got = [await asyncio.wait_for(client.next(), 2) for _ in range(2)]
    assert {(q.symbol, q.bid_size) for q in got if isinstance(q, Quote)} == {
        ("AAPL", 2),
        ("BRK.B", 2),
    }
    await asyncio.sleep(3)  # a lease renewal (every lease/2 s)
    assert len(requests) >= 2
    await client.close()
    assert requests[-1].release
    await hub.close()
    await responder.close()


async def test_renewals_lose_no_messages(tier_gate_stack_factory: StackFactory) -> None:
    stack = await tier_gate_stack_factory(credential_ttl=3)
    client = await _client(stack, unique_user(), "pro")
    await client.subscribe(["MSFT"])
    hub = await stack.hub_publisher()
    subject = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "MSFT")
    total = 1400
    for seq in range(total):  # ~7 s at 200 msg/s, across at least two renewals
        await hub.publish(subject, quote(seq, "MSFT"))
        if seq % 20 == 0:
            await hub.flush()
            await asyncio.sleep(0.1)
    await hub.flush()
    seqs: list[int] = []
    while len(seqs) < total:
        event = await asyncio.wait_for(client.next(), 3)
        assert isinstance(event, Quote)
        seqs.append(event.bid_size)
    assert client.renewals >= 2
    assert sorted(seqs) == list(range(total))  # none lost, none duplicated
    await client.close()
    await hub.close()


async def test_downgraded_client_moves_to_the_delayed_path(tier_gate_stack: TierGateStack) -> None:
    stack = tier_gate_stack
    user = unique_user()
    client = await _client(stack, user, "pro")
    await client.subscribe(["AAPL"])
    assert client.subject_for(next(iter(client._wanted))).startswith("md.rt.")
    await stack.publish_tier(user, "free", version=100)
    for _ in range(100):
        if client.renewals and client.tier == "free":
            break
        await asyncio.sleep(0.1)
    assert client.tier == "free"
    hub = await stack.hub_publisher()
    await hub.publish(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL"), quote(1))
    await hub.publish(subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL"), quote(2))
    await hub.flush()
    event = await asyncio.wait_for(client.next(), 2)
    assert isinstance(event, Quote)
    assert event.bid_size == 2
    await client.close()
    await hub.close()


async def test_tail_cli_prints_one_line_per_quote_and_stops_cleanly(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raxx_md_client", "tail", "--tier", "free", "--user",
        unique_user(), "--tier-gate", stack.base_url, "--nats", stack.nats_url, "AAPL",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    assert proc.stdout is not None
    banner = await asyncio.wait_for(proc.stderr.readline(), 20)
    while b"tier free" not in banner:
        banner = await asyncio.wait_for(proc.stderr.readline(), 10)
    assert b"delayed path" in banner
    hub = await stack.hub_publisher()
    await hub.publish(subjects.delayed(AssetClass.STOCKS, Channel.QUOTES, "AAPL"), quote(7))
    await hub.flush()
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    assert "AAPL" in line
    assert "bid 189.5 x 7" in line
    assert "[delayed]" in line
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    rest = (await proc.stderr.read()).decode()
    assert "Traceback" not in rest
    await hub.close()


async def test_tail_cli_explains_a_stack_that_is_not_running() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raxx_md_client", "tail", "--tier-gate", "http://127.0.0.1:9",
        "AAPL", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"cannot reach tier-gate" in err
    assert b"make run" in err
    assert b"Traceback" not in err
