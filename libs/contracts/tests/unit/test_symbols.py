from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raxx_contracts import InvalidSymbolError, decode_symbol, encode_symbol, subjects
from raxx_contracts.enums import AssetClass, Channel
from raxx_contracts.symbols import MAX_SYMBOL_LENGTH

SYMBOL_CHARS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./_:^+=#@&%!"
)
symbols = st.text(SYMBOL_CHARS, min_size=1, max_size=MAX_SYMBOL_LENGTH)


@given(symbols)
def test_encoding_round_trips(symbol: str) -> None:
    assert decode_symbol(encode_symbol(symbol)) == symbol


@given(symbols)
def test_encoded_token_is_one_plain_subject_token(symbol: str) -> None:
    token = encode_symbol(symbol)
    assert token
    assert not set(token) & set(".*> \t\r\n$")


@given(symbols, symbols)
def test_distinct_symbols_never_share_a_token(a: str, b: str) -> None:
    if a != b:
        assert encode_symbol(a) != encode_symbol(b)


def test_share_class_symbol_is_one_token() -> None:
    assert encode_symbol("BRK.B") == "BRK_2EB"
    assert subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "BRK.B") == "md.rt.stocks.quotes.BRK_2EB"


@pytest.mark.parametrize(
    "bad", ["", "*", ">", "AA PL", "AAPL*", "MD>", "A\tB", "ÄPFEL", "X" * (MAX_SYMBOL_LENGTH + 1)]
)
def test_unencodable_symbol_is_a_typed_error_never_a_wildcard(bad: str) -> None:
    with pytest.raises(InvalidSymbolError) as err:
        encode_symbol(bad)
    assert err.value.symbol == bad


@given(st.text(min_size=1, max_size=20))
def test_decoding_arbitrary_text_either_round_trips_or_raises(token: str) -> None:
    try:
        symbol = decode_symbol(token)
    except InvalidSymbolError:
        return
    assert encode_symbol(symbol) == token


@pytest.mark.parametrize("bad", ["BRK_2eB", "BRK_41B", "A_", "A_2", "*", "a.b"])
def test_non_canonical_tokens_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSymbolError):
        decode_symbol(bad)
