"""Wire vocabulary of Alpaca's market-data streams: endpoints, channels, error codes, encoders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson

from alpaca_sim.options import is_occ

STOCK_CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "imbalances",
)
OPTION_CHANNELS = ("trades", "quotes")
MIRRORED = ("corrections", "cancelErrors")  # follow `trades`, cannot be subscribed directly

ERRORS: dict[int, str] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    408: "v2 not enabled",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    411: "insufficient scope",
    412: "option messages are only available in MsgPack format",
    413: "star subscription is not allowed for option quotes",
    500: "internal error",
}
# Codes after which the server hangs up (the others leave the session usable).
CLOSING_CODES = frozenset({404, 406, 407, 408, 409, 412, 500})

STOCK_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}([./-][A-Z0-9]{1,4})?$")


@dataclass(frozen=True)
class Endpoint:
    """One stream URL path: the feed it serves and which market group feeds it."""

    path: str
    feed: str
    group: str  # "stocks", "test" or "options"

    @property
    def options(self) -> bool:
        """Options endpoints are msgpack-only and know only trades and quotes."""
        return self.group == "options"

    @property
    def channels(self) -> tuple[str, ...]:
        """Channels a client may subscribe to here."""
        return OPTION_CHANNELS if self.options else STOCK_CHANNELS

    def valid_symbol(self, symbol: str) -> bool:
        """Whether `symbol` is well formed for this endpoint (`*` always is)."""
        if symbol == "*":
            return True
        return is_occ(symbol) if self.options else bool(STOCK_SYMBOL_RE.match(symbol))


ENDPOINTS = {
    e.path: e
    for e in (
        Endpoint("/v2/iex", "iex", "stocks"),
        Endpoint("/v2/sip", "sip", "stocks"),
        Endpoint("/v2/delayed_sip", "delayed_sip", "stocks"),
        Endpoint("/v2/test", "test", "test"),
        Endpoint("/v1beta1/indicative", "indicative", "options"),
        Endpoint("/v1beta1/opra", "opra", "options"),
    )
}


def error_msg(code: int) -> dict[str, object]:
    """`{"T":"error","code":..,"msg":..}`."""
    return {"T": "error", "code": code, "msg": ERRORS.get(code, "internal error")}


def rfc3339_ns(seconds: int, nanos: int) -> str:
    """RFC 3339 UTC with nanoseconds, as Alpaca's JSON streams print `t`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, msgpack.Timestamp):
        return rfc3339_ns(obj.seconds, obj.nanoseconds)
    raise TypeError(type(obj).__name__)


def encode_msgpack(msgs: list[dict[str, Any]]) -> bytes:
    """A msgpack frame; `t` values are msgpack.Timestamp (ext type -1)."""
    return msgpack.packb(msgs)  # type: ignore[no-any-return]


def encode_json(msgs: list[dict[str, Any]]) -> str:
    """A JSON text frame; `t` values become RFC 3339 strings with nanoseconds."""
    return orjson.dumps(msgs, default=_json_default).decode()


Encoder = Callable[[list[dict[str, Any]]], bytes | str]


def ts(t_ns: int) -> msgpack.Timestamp:
    """Timestamp of an event, kept as msgpack's type until a connection encodes it."""
    return msgpack.Timestamp(t_ns // 1_000_000_000, t_ns % 1_000_000_000)
