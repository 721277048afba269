"""Run-time fault switches (`/sim/faults`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    """Switches that persist; one-shot actions (drop, send_error, malformed) are not kept."""

    rest_status: int | None = None
    rest_remaining: int = 0
    rest_path_prefix: str | None = None
    silent_until: float = 0.0
    last_actions: list[str] | None = None
    rest_until: float = 0.0
    """Epoch end of a time-window fault (0: the fault counts requests instead)."""
    retry_after: bool = True
    """Whether an injected 429 carries `Retry-After` (Alpaca sends only `X-RateLimit-*`)."""
    symbol_cap: int | None = None
    """Overrides `--symbol-cap` at run time (a 405 on a subscribe past it); None = setting."""
    refuse_symbols: frozenset[str] = frozenset()
    """A subscribe naming any of these is answered `400 invalid syntax` (as Alpaca answers a
    symbol it cannot parse), leaving the subscription unchanged."""

    def take_rest_fault(self, path: str) -> int | None:
        """The status to answer instead of serving `path`, consuming one count."""
        if self.rest_status is None or self.rest_remaining <= 0:
            return None
        if self.rest_path_prefix and not path.startswith(self.rest_path_prefix):
            return None
        if self.rest_until:
            if time.time() < self.rest_until:
                return self.rest_status
            self.rest_status, self.rest_remaining, self.rest_until = None, 0, 0.0
            return None
        self.rest_remaining -= 1
        status = self.rest_status
        if self.rest_remaining <= 0:
            self.rest_status = None
        return status

    def describe(self) -> dict[str, Any]:
        """For `GET /sim/faults`."""
        silent = max(0.0, self.silent_until - time.time())
        return {
            "rest_status": self.rest_status,
            "rest_remaining": self.rest_remaining if self.rest_status else 0,
            "rest_path_prefix": self.rest_path_prefix,
            "rest_until": self.rest_until or None,
            "retry_after": self.retry_after,
            "silent": silent > 0,
            "silence_remaining_seconds": round(silent, 3),
            "last_actions": self.last_actions or [],
            "symbol_cap": self.symbol_cap,
            "refuse_symbols": sorted(self.refuse_symbols),
        }
