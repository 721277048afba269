"""Late corrections of past sessions' closes (applied to history; see `auctions`).

Two ways in, one store: `POST /sim/late_close` sets a close directly, and a trade correction or
cancel published for a closed session (`POST /sim/publish` with a `date`) edits one print of
that session's tape; when the edited print was the session's last standing print, the close
becomes the price of the newest print still standing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

Bar = tuple[float, float, float, float, int, int, float]
Print = tuple[float, int]


@dataclass
class LateCloses:
    """Corrected closes of past sessions, keyed by (symbol, date), and the edited prints."""

    closes: dict[tuple[str, date], float] = field(default_factory=dict)
    edits: dict[tuple[str, date], dict[int, Print | None]] = field(default_factory=dict)
    """Per session: print index -> its corrected (price, size), or None once busted."""

    def set(self, symbol: str, day: date, close: float) -> None:
        """Correct the close of `symbol` on `day`."""
        self.closes[(symbol, day)] = round(close, 2)

    def get(self, symbol: str, day: date) -> float | None:
        """The corrected close, if any."""
        return self.closes.get((symbol, day))

    def apply(self, symbol: str, day: date, bar: Bar) -> Bar:
        """`bar` with its close corrected (high and low widened to contain it)."""
        close = self.closes.get((symbol, day))
        if close is None:
            return bar
        o, h, low, _c, v, n, vw = bar
        return (o, max(h, close), min(low, close), close, v, n, vw)

    def edit_print(
        self,
        symbol: str,
        day: date,
        prices: Sequence[float],
        sizes: Sequence[int],
        index: int | None,
        new: Print | None,
    ) -> tuple[int, Print]:
        """Correct (`new` = (price, size)) or bust (`new` None) print `index` of a closed
        session whose tape is `prices`/`sizes` (default: its last standing print).

        Only an edit of the last standing print can move the close: it becomes the price of
        the newest print then standing (the corrected one, or the one before a busted one).
        Returns (index, the print before the edit); ValueError for no such standing print.
        """
        key = (symbol, day)
        edits = self.edits.get(key, {})
        last = _last_standing(edits, len(prices))
        index = last if index is None else index
        if index is None or not 0 <= index < len(prices) or (index in edits and not edits[index]):
            raise ValueError(f"no standing print {index} of {symbol} on {day}")
        old = _value(edits, prices, sizes, index)
        edits[index] = None if new is None else (float(new[0]), int(new[1]))
        self.edits[key] = edits
        if index == last:
            now_last = _last_standing(edits, len(prices))
            if now_last is not None:
                close = _value(edits, prices, sizes, now_last)[0]
                current = self.get(symbol, day)
                if round(close, 2) != (round(float(prices[-1]), 2) if current is None else current):
                    self.set(symbol, day, close)
        return index, old


def _last_standing(edits: dict[int, Print | None], n: int) -> int | None:
    i = n - 1
    while i >= 0 and i in edits and edits[i] is None:
        i -= 1
    return i if i >= 0 else None


def _value(
    edits: dict[int, Print | None], prices: Sequence[float], sizes: Sequence[int], i: int
) -> Print:
    edited = edits.get(i)
    return edited if edited is not None else (float(prices[i]), int(sizes[i]))
