import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from eod_settler import domain
from eod_settler.domain import Computed, Session, Stored, Target
from raxx_contracts import AssetClass, NanoDatetime, Settle, SettleFeed, SettleSource, encode

NY = ZoneInfo("America/New_York")
AAPL = Target("AAPL", AssetClass.STOCKS)


def test_print_wins_over_previous_settle() -> None:
    primary = (Decimal("190.5"), SettleSource.DAILY_BAR, SettleFeed.SIP)
    c = domain.choose(AAPL, primary, Decimal("180"))
    assert c == Computed(
        "AAPL", AssetClass.STOCKS, Decimal("190.5"), SettleSource.DAILY_BAR, False, SettleFeed.SIP
    )


def test_no_print_carries_previous_forward_flagged_stale() -> None:
    c = domain.choose(AAPL, None, Decimal("180.25"))
    assert c is not None
    assert (c.price, c.source, c.stale) == (Decimal("180.25"), SettleSource.CARRIED_FORWARD, True)


def test_no_print_and_no_previous_gives_nothing_never_zero() -> None:
    assert domain.choose(AAPL, None, None) is None
    assert domain.choose(AAPL, (Decimal(0), SettleSource.DAILY_BAR, SettleFeed.SIP), None) is None


def test_stock_primary_prefers_the_auction_and_labels_the_fallback() -> None:
    sip = SettleFeed.SIP
    assert domain.stock_primary(Decimal("10.01"), Decimal("10"), sip) == (
        Decimal("10.01"), SettleSource.AUCTION, sip,
    )  # fmt: skip
    assert domain.stock_primary(None, Decimal("10"), sip) == (
        Decimal("10"), SettleSource.DAILY_BAR, sip,
    )  # fmt: skip
    assert domain.stock_primary(None, None, sip) is None


def test_intrinsic_value_and_zero_settle_only_for_intrinsic() -> None:
    assert domain.intrinsic(True, Decimal("100"), Decimal("103.25")) == Decimal("3.25")
    assert domain.intrinsic(False, Decimal("100"), Decimal("103.25")) == Decimal(0)
    assert domain.intrinsic(False, Decimal("100"), Decimal("97.5")) == Decimal("2.5")
    worthless = (Decimal(0), SettleSource.INTRINSIC, SettleFeed.SIP)
    c = domain.choose(Target("X", AssetClass.OPTIONS), worthless, Decimal("1"))
    assert c is not None
    assert (c.price, c.source, c.stale) == (Decimal(0), SettleSource.INTRINSIC, False)


def test_reread_is_due_the_next_morning() -> None:
    s = Session(
        dt.date(2025, 12, 23),
        dt.datetime(2025, 12, 23, 9, 30, tzinfo=NY),
        dt.datetime(2025, 12, 23, 16, tzinfo=NY),
    )
    at = domain.reread_due_at(s, dt.time(7, 0), NY)
    assert at == dt.datetime(2025, 12, 24, 7, 0, tzinfo=NY)


def test_to_decimal_refuses_zero_negative_and_garbage() -> None:
    assert domain.to_decimal(0) is None
    assert domain.to_decimal(-1.5) is None
    assert domain.to_decimal("abc") is None
    assert domain.to_decimal(float("nan")) is None
    assert domain.to_decimal(101.37) == Decimal("101.37")
    assert str(domain.to_decimal(180.0)) == "180.0"


def test_quote_mid_needs_two_uncrossed_sides() -> None:
    assert domain.quote_mid(1.0, 1.2) == Decimal("1.1")
    assert domain.quote_mid(0, 1.2) is None
    assert domain.quote_mid(1.3, 1.2) is None


def test_option_primary_prefers_contract_close_then_mid() -> None:
    assert domain.option_primary(Decimal("2"), Decimal("3")) == (
        Decimal("2"),
        SettleSource.CONTRACT_CLOSE,
        None,
    )
    assert domain.option_primary(None, Decimal("3"), SettleFeed.OPRA) == (
        Decimal("3"),
        SettleSource.QUOTE_MID,
        SettleFeed.OPRA,
    )
    assert domain.option_primary(None, None) is None


def test_revisions_same_result_is_unchanged_and_correction_is_next() -> None:
    c = Computed("AAPL", AssetClass.STOCKS, Decimal("190.50"), SettleSource.DAILY_BAR, False)
    assert domain.next_revision(None, c) == 1
    same = Stored(Decimal("190.5"), SettleSource.DAILY_BAR, False, 1)
    assert domain.next_revision(same, c) is None
    other = Stored(Decimal("190.4"), SettleSource.DAILY_BAR, False, 1)
    assert domain.next_revision(other, c) == 2
    was_stale = Stored(Decimal("190.5"), SettleSource.CARRIED_FORWARD, True, 3)
    assert domain.next_revision(was_stale, c) == 4


def test_done_msg_id_depends_on_content_only() -> None:
    d = dt.date(2024, 7, 3)
    a = domain.done_msg_id(d, {"AAPL": 1, "MSFT": 1})
    assert a == domain.done_msg_id(d, {"MSFT": 1, "AAPL": 1})
    assert a != domain.done_msg_id(d, {"AAPL": 2, "MSFT": 1})
    assert a != domain.done_msg_id(d, {"AAPL": 1})


def test_half_day_settle_is_due_at_1300_plus_lag() -> None:
    day = dt.date(2024, 7, 3)
    s = Session(
        day, dt.datetime(2024, 7, 3, 9, 30, tzinfo=NY), dt.datetime(2024, 7, 3, 13, tzinfo=NY)
    )
    assert s.due_at(900) == dt.datetime(2024, 7, 3, 13, 15, tzinfo=NY)
    before = dt.datetime(2024, 7, 3, 13, 14, tzinfo=NY)
    after = dt.datetime(2024, 7, 3, 13, 16, tzinfo=NY)
    assert domain.latest_due_session([s], before, 900) is None
    assert domain.latest_due_session([s], after, 900) == s
    assert domain.next_due_at([s], before, 900) == s.due_at(900)


def test_batches_respect_count_and_query_length() -> None:
    assert domain.chunks(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    syms = [f"S{i:04d}" for i in range(10_000)]  # 5 chars + encoded comma = 8 bytes each
    by_count = domain.symbol_batches(syms, 1000, 1_000_000)
    assert [len(b) for b in by_count] == [1000] * 10
    by_bytes = domain.symbol_batches(syms, 10_000, 8000)
    assert all(len(b) == 1000 for b in by_bytes)
    assert sum(len(b) for b in by_bytes) == 10_000
    assert domain.symbol_batches([], 10, 100) == []


def test_settle_payload_with_feed_is_exactly_the_contract_encoding() -> None:
    c = Computed(
        "AAPL", AssetClass.STOCKS, Decimal("190.07"), SettleSource.AUCTION, False, SettleFeed.SIP
    )
    close = NanoDatetime.parse("2025-12-24T18:00:00Z")
    at = NanoDatetime.parse("2025-12-24T18:15:01.123456789Z")
    day = dt.date(2025, 12, 24)
    model = Settle(
        symbol="AAPL", timestamp=close, date=day, asset_class=AssetClass.STOCKS,
        price=Decimal("190.07"), source=SettleSource.AUCTION, feed=SettleFeed.SIP, revision=1,
        computed_at=at,
    )  # fmt: skip
    assert domain.settle_payload(c, day, 1, close, at) == encode(model)


def test_settle_payload_is_exactly_the_contract_encoding() -> None:
    c = Computed("BRK.B", AssetClass.STOCKS, Decimal("412.07"), SettleSource.CARRIED_FORWARD, True)
    close = NanoDatetime.parse("2025-12-24T18:00:00Z")
    at = NanoDatetime.parse("2025-12-24T18:15:01.123456789Z")
    day = dt.date(2025, 12, 24)
    model = Settle(
        symbol="BRK.B",
        timestamp=close,
        date=day,
        asset_class=AssetClass.STOCKS,
        price=Decimal("412.07"),
        source=SettleSource.CARRIED_FORWARD,
        revision=2,
        stale=True,
        computed_at=at,
    )
    assert domain.settle_payload(c, day, 2, close, at) == encode(model)
