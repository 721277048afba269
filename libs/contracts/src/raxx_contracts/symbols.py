"""Reversible encoding of a market symbol into one NATS subject token.

A NATS token may not contain `.`, `*`, `>` or white space, and `$` is reserved at the start of
a subject. Symbols such as `BRK.B` therefore cannot be used verbatim. Letters, digits and `-`
pass through; every other allowed character is written as `_XX` (its hex code), and `_` itself
is escaped, so decoding is unambiguous. A symbol that cannot be encoded raises
:class:`InvalidSymbolError`; it never becomes a wildcard.
"""

from __future__ import annotations

import re

from raxx_contracts.errors import InvalidSymbolError

MAX_SYMBOL_LENGTH = 40
_PASS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
# Printable ASCII a symbol may carry besides letters and digits (Alpaca spells share classes
# with `.`, some venues with `/`). `*` and `>` are refused: in a request they read as wildcards.
_ESCAPABLE = frozenset("./_:^+=#@&%!")
_TOKEN = re.compile(r"(?:[A-Za-z0-9-]|_[0-9A-F]{2})+")


def encode_symbol(symbol: str) -> str:
    """Encode `symbol` (as Alpaca spells it) into one NATS subject token."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidSymbolError(str(symbol), "empty")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbolError(symbol, f"longer than {MAX_SYMBOL_LENGTH} characters")
    out: list[str] = []
    for ch in symbol:
        if ch in _PASS:
            out.append(ch)
        elif ch in _ESCAPABLE:
            out.append(f"_{ord(ch):02X}")
        else:
            raise InvalidSymbolError(symbol, f"character {ch!r} is not allowed in a symbol")
    return "".join(out)


def decode_symbol(token: str) -> str:
    """Invert :func:`encode_symbol`; raise :class:`InvalidSymbolError` for a foreign token."""
    if not _TOKEN.fullmatch(token):
        raise InvalidSymbolError(token, "not an encoded symbol token")
    out: list[str] = []
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "_":
            decoded = chr(int(token[i + 1 : i + 3], 16))
            if decoded not in _ESCAPABLE:
                raise InvalidSymbolError(token, f"escape _{token[i + 1 : i + 3]} is not canonical")
            out.append(decoded)
            i += 3
        else:
            out.append(ch)
            i += 1
    symbol = "".join(out)
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbolError(token, f"longer than {MAX_SYMBOL_LENGTH} characters")
    return symbol


def validate_symbol(symbol: str) -> str:
    """Return `symbol` unchanged if it can be encoded, else raise :class:`InvalidSymbolError`."""
    encode_symbol(symbol)
    return symbol
