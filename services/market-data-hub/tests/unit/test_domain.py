"""Pure domain: leases, subscription planning, backoff, token bucket, normalization."""

from __future__ import annotations

import msgpack
from market_data_hub.domain import (
    Backoff,
    InterestOutcome,
    Limits,
    OwnerLeases,
    SlotTable,
    Subscriptions,
    apply_request,
    plan_changes,
)
from market_data_hub.domain.ratelimit import TokenBucket
from market_data_hub.normalize import convert, event_ns, parse_epoch_ns
from raxx_contracts import (
    AssetClass,
    Bar,
    Channel,
    InterestQuota,
    NanoDatetime,
    Quote,
    decode,
    dumps,
    encode,
)

S = 1_000_000_000


QUOTA = InterestQuota(
    max_symbols_per_user=10, max_consumers_per_user=2, user_cap_share=1.0, tier_cap_share=1.0
)


def _req(
    owners: dict[str, OwnerLeases],
    slots: SlotTable,
    owner: str,
    symbols: list[str],
    *,
    consumer: str = "c",
    tier: str = "pro",
    channels: tuple[Channel, ...] = (Channel.QUOTES,),
    lease: int = 10,
    now: int = 0,
    cap: int = 30,
    quota: InterestQuota = QUOTA,
    release: bool = False,
) -> tuple[InterestOutcome, SlotTable]:
    out = apply_request(
        owners.get(owner, OwnerLeases()), slots, tier=tier, consumer=consumer, symbols=symbols,
        channels=channels, lease_seconds=lease, release=release, now_ns=now,
        limits=Limits(cap, quota, 256 * 1024),
    )  # fmt: skip
    if out.changed:
        owners[owner] = out.owner
        return out, out.slots
    return out, slots


def test_cap_counts_distinct_symbols_across_owners_and_renewals() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.STOCKS)
    out, t = _req(owners, t, "a", ["AAPL", "MSFT"], cap=2)
    assert out.accepted == ("AAPL", "MSFT")
    out, t = _req(owners, t, "b", ["MSFT", "AMZN"], channels=(Channel.TRADES,), cap=2)
    assert out.accepted == ("MSFT",)
    assert [r.reason for r in out.rejected] == ["symbol_limit"]
    assert t.union(1) == {Channel.QUOTES: {"AAPL", "MSFT"}, Channel.TRADES: {"MSFT"}}
    assert SlotTable.from_json(AssetClass.STOCKS, t.to_json()) == t
    assert OwnerLeases.from_json(owners["a"].to_json()) == owners["a"]


def test_lapsed_lease_frees_cap_and_leaves_union() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.STOCKS)
    _, t = _req(owners, t, "a", ["AAPL"], lease=5, cap=1)
    assert t.union(4 * S) == {Channel.QUOTES: {"AAPL"}}
    assert t.union(5 * S) == {}
    out, t = _req(owners, t, "b", ["MSFT"], lease=5, now=6 * S, cap=1)
    assert out.accepted == ("MSFT",)


def test_release_frees_the_slot_at_once_but_only_the_owners_own_lease() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.STOCKS)
    _, t = _req(owners, t, "a", ["AAPL"], lease=3600, cap=1)
    _, t = _req(owners, t, "b", ["AAPL"], lease=3600, cap=1)
    # b "releases" under a's consumer name: only b's own record changes
    _, t = _req(owners, t, "b", ["AAPL"], release=True, cap=1)
    assert t.held(1) == {"AAPL"}
    out, t = _req(owners, t, "c", ["MSFT"], cap=1)
    assert out.rejected[0].reason == "symbol_limit"
    _, t = _req(owners, t, "a", ["AAPL"], release=True, cap=1)
    assert t.held(1) == set()
    out, t = _req(owners, t, "c", ["MSFT"], cap=1)
    assert out.accepted == ("MSFT",)


def test_user_quota_consumer_quota_and_tier_share() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.STOCKS)
    free = InterestQuota(
        max_symbols_per_user=10, max_consumers_per_user=2, user_cap_share=0.2, tier_cap_share=0.5
    )
    syms = [f"S{i}" for i in range(10)]
    out, t = _req(owners, t, "f1", syms, tier="free", quota=free, cap=10)
    assert out.accepted == ("S0", "S1")  # 0.2 x 10
    assert {r.reason for r in out.rejected} == {"user_symbol_quota"}
    out, t = _req(owners, t, "f1", ["S0"], consumer="d", tier="free", quota=free, cap=10)
    assert out.accepted == ("S0",)  # a second consumer renewing a held symbol
    out, t = _req(owners, t, "f1", ["S1"], consumer="e", tier="free", quota=free, cap=10)
    assert out.rejected[0].reason == "user_consumer_quota"
    for i, u in enumerate(["f2", "f3"]):
        _, t = _req(owners, t, u, syms[2 + 2 * i : 4 + 2 * i], tier="free", quota=free, cap=10)
    out, t = _req(owners, t, "f4", ["S9"], tier="free", quota=free, cap=10)
    assert out.rejected[0].reason == "tier_share"  # free holds 5 of 10
    out, t = _req(owners, t, "f4", ["S0"], tier="free", quota=free, cap=10)
    assert out.accepted == ("S0",)  # already held by the tier: no new share used
    out, t = _req(owners, t, "p1", ["AAPL"], cap=10)
    assert out.accepted == ("AAPL",)


def test_invalid_symbol_and_channel() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.OPTIONS)
    out, t = _req(owners, t, "a", ["AAPL240315C00172500", "nope"])
    assert out.accepted == ("AAPL240315C00172500",)
    assert out.rejected[0].reason == "invalid_symbol"
    out, t = _req(owners, t, "a", ["AAPL240315C00172500"], channels=(Channel.BARS,))
    assert out.rejected[0].reason == "invalid_channel"
    _, t = _req(owners, t, "a", ["AAPL240315C00172500"], release=True)
    assert t.union(0) == {}


def test_records_never_exceed_the_byte_limit() -> None:
    owners: dict[str, OwnerLeases] = {}
    t = SlotTable(AssetClass.STOCKS)
    big = InterestQuota(
        max_symbols_per_user=1000, max_consumers_per_user=1000, user_cap_share=1.0,
        tier_cap_share=1.0,
    )  # fmt: skip
    for i in range(300):
        out = apply_request(
            owners.get("a", OwnerLeases()), t, tier="pro", consumer=f"c{i}" * 20,
            symbols=[f"S{j}" for j in range(20)], channels=(Channel.QUOTES,),
            lease_seconds=60, release=False, now_ns=0, limits=Limits(1000, big, 8192),
        )  # fmt: skip
        if out.changed:
            owners["a"], t = out.owner, out.slots
        assert len(owners["a"].to_json()) <= 8192
        assert len(t.to_json()) <= 8192
    assert out.rejected


def test_plan_subscribes_new_and_unsubscribes_only_after_linger() -> None:
    cur = Subscriptions()
    p = plan_changes(cur, {Channel.QUOTES: {"AAPL", "MSFT"}}, 0, 2 * S, cap=30)
    assert p.subscribe == {Channel.QUOTES: {"AAPL", "MSFT"}}
    cur.apply(p)
    p = plan_changes(cur, {Channel.QUOTES: {"AAPL"}}, 1 * S, 2 * S, cap=30)
    assert p.empty
    cur.apply(p)
    p = plan_changes(cur, {Channel.QUOTES: {"AAPL"}}, 3 * S, 2 * S, cap=30)
    assert p.unsubscribe == {Channel.QUOTES: {"MSFT"}}


def test_lingering_symbol_is_evicted_when_cap_needs_room() -> None:
    cur = Subscriptions()
    cur.apply(plan_changes(cur, {Channel.QUOTES: {"AAPL"}}, 0, 60 * S, cap=1))
    cur.apply(plan_changes(cur, {}, 1 * S, 60 * S, cap=1))
    p = plan_changes(cur, {Channel.QUOTES: {"MSFT"}}, 2 * S, 60 * S, cap=1)
    assert p.subscribe == {Channel.QUOTES: {"MSFT"}}
    assert p.unsubscribe == {Channel.QUOTES: {"AAPL"}}


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert b.next() == 0.25
    b.reset()
    assert b.attempt == 0


def test_token_bucket_refills_at_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(60, burst=2, monotonic=lambda: now[0])
    bucket.tokens = 0
    assert bucket.wait_time() == 1.0
    now[0] = 1.0
    assert bucket.wait_time() == 0.0
    bucket.drain(5)
    assert bucket.wait_time() >= 5.0


def test_normalized_payloads_decode_as_contract_models() -> None:
    ts = msgpack.Timestamp(1_700_000_000, 123_456_789)
    m = {"T": "q", "S": "BRK.B", "bx": "V", "bp": 412.5, "bs": 3, "ax": "V", "ap": 412.6,
         "as": 1, "c": ["R"], "z": "A", "t": ts}  # fmt: skip
    ch, payload = convert(AssetClass.STOCKS, m, "iex") or (None, {})
    q = decode(Quote, dumps(payload))
    assert ch is Channel.QUOTES
    assert q.timestamp.epoch_ns() == 1_700_000_000_123_456_789
    assert str(q.bid_price) == "412.5"
    assert dumps(payload) == encode(q)
    bar = {"T": "b", "S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": ts}
    _, payload = convert(AssetClass.STOCKS, bar, "iex") or (None, {})
    assert decode(Bar, dumps(payload)).backfill is False
    assert event_ns(dumps(payload)) == 1_700_000_000_123_456_789


def test_parse_epoch_ns_matches_nanodatetime() -> None:
    for text in (
        "2024-01-02T15:04:05Z",
        "2024-01-02T15:04:05.5Z",
        "2024-01-02T15:04:05.000001234Z",
    ):
        assert parse_epoch_ns(text) == NanoDatetime.parse(text).epoch_ns()
