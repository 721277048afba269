"""Late corrections of past sessions' closes (applied to history; see `auctions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

Bar = tuple[float, float, float, float, int, int, float]


@dataclass
class LateCloses:
    """Corrected closes of past sessions, keyed by (symbol, date)."""

    closes: dict[tuple[str, date], float] = field(default_factory=dict)

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
