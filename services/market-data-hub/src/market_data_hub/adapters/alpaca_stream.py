"""A small client of Alpaca's documented market-data stream protocol (msgpack, deflate).

Why not alpaca-py's StockDataStream/OptionDataStream: they cannot change subscriptions safely
while running (alpaca-py#491), await handlers inline on the socket reader (407 slow-client
risk) and hide the raw frames. This client only does the protocol: connect, authenticate,
send subscribe/unsubscribe deltas, and hand raw frames to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from market_data_hub.errors import StreamError

CHUNK = 200
"""Symbols per channel list in one subscribe message (large coalesced subscribes get lost)."""


def decode_frame(frame: bytes | str) -> Any:
    """msgpack binary frames (what we ask for) or JSON text frames.

    msgpack timestamps (`t`) are unpacked by msgpack's C code straight into integer epoch
    nanoseconds (`timestamp=2`): no `msgpack.Timestamp` object per message. JSON frames keep
    their RFC 3339 text; `normalize.timestamp_text` accepts both.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return msgpack.unpackb(frame, raw=False, timestamp=2)
    return orjson.loads(frame)


class AlpacaStream:
    """One authenticated upstream socket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, key: str, secret: str, timeout: float = 10.0) -> AlpacaStream:  # noqa: ASYNC109
        """Connect, expect `connected`, authenticate; raise StreamError on an error frame."""
        try:
            ws = await asyncio.wait_for(
                connect(
                    url,
                    additional_headers={"Content-Type": "application/msgpack"},
                    compression="deflate",
                    max_size=2**24,
                    max_queue=4096,
                    ping_interval=10,
                    ping_timeout=20,
                    open_timeout=timeout,
                    # A cancelled session (step-down, shutdown) must let go within seconds:
                    # the closing handshake waits at most this long, not websockets' 10 s.
                    close_timeout=2,
                ),
                timeout,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            raise StreamError(f"upgrade refused with HTTP {code}", code) from exc
        stream = cls(ws)
        try:
            await stream._expect("connected", timeout)
            await ws.send(msgpack.packb({"action": "auth", "key": key, "secret": secret}))
            await stream._expect("authenticated", timeout)
        except BaseException:
            await ws.close()
            raise
        return stream

    async def _expect(self, msg: str, timeout: float) -> None:  # noqa: ASYNC109
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        items = decode_frame(frame)
        first = items[0] if isinstance(items, list) and items else {}
        if not isinstance(first, dict):
            raise StreamError(f"unexpected frame while waiting for {msg!r}")
        if first.get("T") == "error":
            raise StreamError(
                f"stream error {first.get('code')}: {first.get('msg')}", int(first.get("code", 0))
            )
        if first.get("T") != "success" or first.get("msg") != msg:
            raise StreamError(f"expected {msg!r}, got {first!r}")

    async def send_action(self, action: str, channels: Mapping[str, Sequence[str]]) -> int:
        """Send subscribe/unsubscribe deltas in chunks; return the number of messages sent."""
        sent = 0
        for key, symbols in channels.items():
            syms = sorted(symbols)
            for i in range(0, len(syms), CHUNK):
                await self.ws.send(msgpack.packb({"action": action, key: syms[i : i + CHUNK]}))
                sent += 1
        return sent

    async def close(self) -> None:
        """Close cleanly (so Alpaca frees the slot at once instead of after 90 s)."""
        await self.ws.close()
