"""InterestStore's two revision-checked writes, on an in-memory KV with NATS KV's semantics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from market_data_hub.domain import FakeClock
from market_data_hub.interest import InterestStore, owner_key
from market_data_hub.settings import Settings
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from raxx_contracts import AssetClass, InterestRequest, default_policy, subjects


@dataclass
class Entry:
    value: bytes
    revision: int


class FakeKV:
    """get/create/update with revisions; `before_write` runs once before a matching write."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.rev = 0
        self.before_write: tuple[str, Callable[[], Awaitable[None]]] | None = None

    async def get(self, key: str) -> Entry:
        if key not in self.data:
            raise KeyNotFoundError
        return self.data[key]

    async def _hook(self, key: str) -> None:
        if self.before_write and key.startswith(self.before_write[0]):
            _, hook = self.before_write
            self.before_write = None
            await hook()

    async def create(self, key: str, value: bytes) -> int:
        await self._hook(key)
        if key in self.data:
            raise KeyWrongLastSequenceError
        return self._put(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        await self._hook(key)
        if key not in self.data or self.data[key].revision != last:
            raise KeyWrongLastSequenceError
        return self._put(key, value)

    def _put(self, key: str, value: bytes) -> int:
        self.rev += 1
        self.data[key] = Entry(value, self.rev)
        return self.rev


def _store(kv: FakeKV) -> InterestStore:
    return InterestStore(kv, Settings(), FakeClock(10**18), default_policy())  # type: ignore[arg-type]


async def test_a_lost_owner_race_undoes_the_slot_moves_exactly() -> None:
    kv = FakeKV()
    a, b = _store(kv), _store(kv)
    token = subjects.user_token("alice")

    async def concurrent() -> None:  # the same user, answered by the other replica meanwhile
        await b.handle("pro", token, InterestRequest(consumer_id="y", symbols=("MSFT", "AAPL")))

    kv.before_write = ("owner.", concurrent)
    reply = await a.handle("pro", token, InterestRequest(consumer_id="x", symbols=("AAPL",)))
    assert reply.accepted == ("AAPL",)
    slots, _ = await a.load(AssetClass.STOCKS)
    # one owner holds each symbol: the first attempt's +1 on AAPL was undone before the retry
    counts = {
        s: sum(sum(b.values()) for b in slot.tiers.values()) for s, slot in slots.symbols.items()
    }
    assert counts == {"AAPL": 1, "MSFT": 1}
    assert owner_key(AssetClass.STOCKS, token) in kv.data
    await a.handle("pro", token, InterestRequest(consumer_id="x", symbols=("AAPL",), release=True))
    await a.handle("pro", token, InterestRequest(consumer_id="y", symbols=("AAPL",), release=True))
    slots, _ = await a.load(AssetClass.STOCKS)
    assert set(slots.symbols) == {"MSFT"}
