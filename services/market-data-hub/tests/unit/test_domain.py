"""Pure domain: leases, subscription planning, backoff, token bucket, normalization."""

from __future__ import annotations

import msgpack
from market_data_hub.domain import Backoff, LeaseTable, Subscriptions, plan_changes
from market_data_hub.domain.ratelimit import TokenBucket
from market_data_hub.normalize import convert, event_ns, parse_epoch_ns
from raxx_contracts import AssetClass, Bar, Channel, NanoDatetime, Quote, decode, dumps, encode

S = 1_000_000_000


def test_lease_table_caps_distinct_symbols_and_renews_existing_ones() -> None:
    t = LeaseTable(AssetClass.STOCKS)
    out = t.apply("a", ["AAPL", "MSFT"], [Channel.QUOTES], 10, 0, cap=2)
    assert out.accepted == ("AAPL", "MSFT")
    out = t.apply("b", ["MSFT", "AMZN"], [Channel.TRADES], 10, 0, cap=2)
    assert out.accepted == ("MSFT",)
    assert [r.reason for r in out.rejected] == ["symbol_limit"]
    assert t.union(1) == {Channel.QUOTES: {"AAPL", "MSFT"}, Channel.TRADES: {"MSFT"}}


def test_lapsed_lease_frees_cap_and_leaves_union() -> None:
    t = LeaseTable(AssetClass.STOCKS)
    t.apply("a", ["AAPL"], [Channel.QUOTES], 5, 0, cap=1)
    assert t.union(4 * S) == {Channel.QUOTES: {"AAPL"}}
    assert t.union(5 * S) == {}
    assert t.apply("b", ["MSFT"], [Channel.QUOTES], 5, 6 * S, cap=1).accepted == ("MSFT",)


def test_release_invalid_symbol_and_channel() -> None:
    t = LeaseTable(AssetClass.OPTIONS)
    out = t.apply("a", ["AAPL240315C00172500", "nope"], [Channel.QUOTES], 5, 0, cap=5)
    assert out.accepted == ("AAPL240315C00172500",)
    assert out.rejected[0].reason == "invalid_symbol"
    out = t.apply("a", ["AAPL240315C00172500"], [Channel.BARS], 5, 0, cap=5)
    assert out.rejected[0].reason == "invalid_channel"
    t.apply("a", ["AAPL240315C00172500"], [Channel.QUOTES], 5, 0, cap=5, release=True)
    assert t.union(0) == {}
    assert LeaseTable.from_json(AssetClass.OPTIONS, t.to_json()).leases == t.leases


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
