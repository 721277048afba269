from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raxx_contracts import (
    Bar,
    DecodeError,
    NanoDatetime,
    OptionQuote,
    Quote,
    Settle,
    Trade,
    decode,
    dumps,
    encode,
)
from raxx_contracts.codec import decimal_str
from raxx_contracts.enums import AssetClass, SettleSource

nanotimes = st.builds(
    lambda dt, ns: NanoDatetime.from_datetime(dt, ns),
    # hypothesis takes naive bounds and applies `timezones` itself
    st.datetimes(
        min_value=datetime(1990, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.integers(0, 999),
)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1000000"), places=4)
sizes = st.integers(0, 10_000_000)
syms = st.sampled_from(["AAPL", "BRK.B", "SPY", "FAKEPACA", "BF.B"])

quotes = st.builds(
    Quote,
    symbol=syms,
    timestamp=nanotimes,
    feed=st.sampled_from(["iex", "sip"]),
    bid_price=prices,
    bid_size=sizes,
    ask_price=prices,
    ask_size=sizes,
    conditions=st.lists(st.sampled_from(["R", "@", "T"]), max_size=3).map(tuple),
    tape=st.sampled_from(["A", "B", "C"]),
)
trades = st.builds(
    Trade, symbol=syms, timestamp=nanotimes, feed=st.just("iex"), price=prices, size=sizes,
    trade_id=st.none() | st.integers(0, 2**62),
)  # fmt: skip


@given(nanotimes)
def test_nanosecond_timestamps_round_trip_through_text(ts: NanoDatetime) -> None:
    again = NanoDatetime.parse(ts.rfc3339())
    assert again == ts
    assert again.epoch_ns() == ts.epoch_ns()
    assert NanoDatetime.from_epoch_ns(ts.epoch_ns()) == ts


@given(quotes)
def test_quote_round_trips_and_hot_path_bytes_match_the_model(q: Quote) -> None:
    wire = encode(q)
    assert decode(Quote, wire) == q
    assert dumps(q.model_dump()) == wire


@given(trades)
def test_trade_round_trips(t: Trade) -> None:
    assert decode(Trade, encode(t)) == t
    assert dumps(t.model_dump()) == encode(t)


def test_prices_are_decimal_strings_and_times_rfc3339_nanos() -> None:
    q = OptionQuote(
        symbol="AAPL240315C00172500",
        timestamp="2024-03-15T14:30:00.123456789Z",
        feed="indicative",
        bid_price="1.05",
        bid_size=3,
        ask_price=Decimal("1.10"),
        ask_size=4,
    )
    text = encode(q).decode()
    assert '"bid_price":"1.05"' in text
    assert '"ask_price":"1.10"' in text
    assert '"timestamp":"2024-03-15T14:30:00.123456789Z"' in text
    assert '"schema_version":1' in text


def test_decode_rejects_a_payload_that_does_not_fit() -> None:
    with pytest.raises(DecodeError):
        decode(Quote, b'{"symbol": "AAPL"}')
    with pytest.raises(DecodeError):
        decode(Quote, b"not json")


def test_decode_ignores_added_fields_for_forward_compatibility() -> None:
    bar = Bar(
        symbol="AAPL", timestamp="2024-01-02T14:31:00Z", feed="iex", open="1", high="2", low="0.5",
        close="1.5", volume=10,
    )  # fmt: skip
    data = encode(bar)[:-1] + b',"new_field":42}'
    assert decode(Bar, data) == bar


def test_settle_price_must_be_positive_never_zero() -> None:
    with pytest.raises(ValueError, match="positive unless the source is intrinsic"):
        Settle(
            symbol="AAPL", timestamp="2024-01-02T21:00:00Z", date="2024-01-02",
            asset_class=AssetClass.STOCKS, price="0", source=SettleSource.DAILY_BAR, revision=1,
            computed_at="2024-01-02T21:05:00Z",
        )  # fmt: skip
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settle(
            symbol="X", timestamp="2024-01-02T21:00:00Z", date="2024-01-02",
            asset_class=AssetClass.OPTIONS, price="-1", source=SettleSource.INTRINSIC, revision=1,
            computed_at="2024-01-02T21:05:00Z",
        )  # fmt: skip


def test_an_option_expired_worthless_settles_at_intrinsic_zero() -> None:
    s = Settle(
        symbol="AAPL260116P00100000", timestamp="2026-01-16T21:00:00Z", date="2026-01-16",
        asset_class=AssetClass.OPTIONS, price="0", source=SettleSource.INTRINSIC, feed="sip",
        revision=1, computed_at="2026-01-16T21:15:00Z",
    )  # fmt: skip
    assert decode(Settle, encode(s)) == s


@pytest.mark.parametrize(
    ("value", "text"), [(172.35, "172.35"), (1.0, "1"), (0.1, "0.1"), (5, "5"), ("1.50", "1.50")]
)
def test_upstream_numbers_become_shortest_decimal_strings(value: float | str, text: str) -> None:
    assert decimal_str(value) == text


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        NanoDatetime.from_datetime(datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test


@given(nanotimes)
def test_hot_path_epoch_formatter_matches_the_model_and_parses_back(ts: NanoDatetime) -> None:
    from raxx_contracts.timestamps import format_epoch_ns

    text = format_epoch_ns(ts.epoch_ns())
    assert NanoDatetime.parse(text) == ts
