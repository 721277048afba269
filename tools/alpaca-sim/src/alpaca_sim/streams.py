"""Market-data websocket sessions: handshake, auth, (un)subscribe, bounded send buffer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgpack
import orjson
from aiohttp import WSMsgType, web

from alpaca_sim.keys import SIM_KEY
from alpaca_sim.protocol import (
    CLOSING_CODES,
    ENDPOINTS,
    MIRRORED,
    Endpoint,
    encode_json,
    encode_msgpack,
    error_msg,
)

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_CLOSE = object()


class Connection:
    """One client websocket and its subscriptions; data leaves through a bounded queue."""

    def __init__(
        self, endpoint: Endpoint, ws: web.WebSocketResponse, request: web.Request, sim: SimState
    ) -> None:
        self.id = next(_ids)
        self.endpoint = endpoint
        self.ws = ws
        self.request = request
        self.sim = sim
        self.msgpack = request.content_type == "application/msgpack"
        self.encode = encode_msgpack if self.msgpack else encode_json
        self.subs: dict[str, set[str]] = {ch: set() for ch in endpoint.channels}
        self.identity: str | None = None
        self.key: str | None = None
        self.authenticated = False
        self.closing = False
        self.connected_at = time.time()
        self.messages_sent = 0
        self.frames_sent = 0
        self.delay_ns = (
            int(sim.settings.delayed_sip_seconds * 1e9) if endpoint.feed == "delayed_sip" else 0
        )
        self._queue: deque[Any] = deque()
        self._queued_bytes = 0
        self._limit = sim.settings.send_buffer_bytes
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- sending ---------------------------------------------------------------------------

    def send_control(self, msg: dict[str, Any]) -> None:
        """A control frame (always an array of one)."""
        self._enqueue(self.encode([msg]), force=True)

    def send_data(self, msgs: list[dict[str, Any]]) -> None:
        """Data messages, batched into frames of at most `max_batch`."""
        if self.closing:
            return
        if self.delay_ns:
            msgs = [self._delayed(m) for m in msgs]
        step = self.sim.settings.max_batch
        for i in range(0, len(msgs), step):
            chunk = msgs[i : i + step]
            if not self._enqueue(self.encode(chunk), force=False):
                return
            self.messages_sent += len(chunk)
            self.sim.metrics.ws_messages.labels(self.endpoint.feed).inc(len(chunk))

    def send_raw(self, frame: bytes | str) -> None:
        """A frame as is (fault injection)."""
        self._enqueue(frame, force=True)

    def _delayed(self, m: dict[str, Any]) -> dict[str, Any]:
        t = m.get("t")
        if not isinstance(t, msgpack.Timestamp):
            return m
        ns = t.seconds * 1_000_000_000 + t.nanoseconds - self.delay_ns
        return {**m, "t": msgpack.Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)}

    def _enqueue(self, frame: bytes | str, *, force: bool) -> bool:
        if self.closing:
            return False
        size = len(frame)
        if not force and self._queued_bytes + size > self._limit:
            log.info(
                "connection %s is too slow (%d bytes queued): 407", self.id, self._queued_bytes
            )
            self.slow_client()
            return False
        self._queue.append(frame)
        self._queued_bytes += size
        self._wake.set()
        return True

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                frame = self._queue.popleft()
                if frame is _CLOSE:
                    await self.ws.close()
                    return
                self._queued_bytes -= len(frame)
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
                self.frames_sent += 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("connection %s writer stopped: %s", self.id, exc)
            self.closing = True

    # ---- closing ---------------------------------------------------------------------------

    def fail(self, code: int) -> None:
        """Send an error; hang up afterwards when Alpaca would."""
        self.send_control(error_msg(code))
        if code in CLOSING_CODES:
            self.close_after_flush()

    def close_after_flush(self) -> None:
        """Close once every queued frame is written."""
        if not self.closing:
            self._queue.append(_CLOSE)
            self._wake.set()
            self.closing = True

    def slow_client(self) -> None:
        """Drop the backlog, try to say 407, and disconnect even if the client never reads."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._spawn(self._hang_up(self.encode([error_msg(407)])))

    def abort(self) -> None:
        """Cut the TCP connection with no close frame (a network drop)."""
        self.closing = True
        self._writer.cancel()
        if self.request.transport is not None:
            self.request.transport.abort()

    async def _hang_up(self, last_words: bytes | str) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        with contextlib.suppress(Exception):
            if isinstance(last_words, bytes):
                await asyncio.wait_for(self.ws.send_bytes(last_words), 1.0)
            else:
                await asyncio.wait_for(self.ws.send_str(last_words), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 1.0)
        if self.request.transport is not None:
            self.request.transport.abort()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Release the writer task."""
        self._writer.cancel()
        for task in self._tasks:
            task.cancel()

    # ---- state -----------------------------------------------------------------------------

    def subscription_msg(self) -> dict[str, Any]:
        """The full current set, as sent after every (un)subscribe."""
        msg: dict[str, Any] = {"T": "subscription"}
        for ch in self.endpoint.channels:
            msg[ch] = sorted(self.subs[ch])
        if not self.endpoint.options:
            for ch in MIRRORED:
                msg[ch] = sorted(self.subs["trades"])
        return msg

    def describe(self) -> dict[str, Any]:
        """For `/sim/state`."""
        return {
            "id": self.id,
            "endpoint": self.endpoint.path,
            "feed": self.endpoint.feed,
            "encoding": "msgpack" if self.msgpack else "json",
            "authenticated": self.authenticated,
            "key": self.key,
            "subscriptions": self.subscription_msg() | {"T": None},
            "messages_sent": self.messages_sent,
            "frames_sent": self.frames_sent,
            "queued_bytes": self._queued_bytes,
            "connected_at": self.connected_at,
            "remote": self.request.remote,
        }


async def stream_handler(request: web.Request) -> web.StreamResponse:
    """`GET /v2/{feed}` and `/v1beta1/{indicative,opra}`: one market-data session."""
    sim: SimState = request.app[SIM_KEY]
    endpoint = ENDPOINTS[request.path]
    ws = web.WebSocketResponse(compress=True, max_msg_size=64 * 1024 * 1024, timeout=2.0)
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {"code": 40010000, "message": "websocket upgrade expected"}, status=400
        )
    await ws.prepare(request)
    sim.stream_connects[request.path] += 1
    conn = Connection(endpoint, ws, request, sim)
    sim.engine.add(conn)
    watchdog = asyncio.create_task(_auth_watchdog(conn, sim.settings.auth_timeout))
    try:
        if endpoint.options and not conn.msgpack:
            conn.fail(412)
        else:
            conn.send_control({"T": "success", "msg": "connected"})
            key = request.headers.get("APCA-API-KEY-ID")
            secret = request.headers.get("APCA-API-SECRET-KEY")
            if key is not None and secret is not None:
                sim.engine.authenticate(conn, key, secret)
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if not conn.closing:
                    _handle(conn, sim, msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        watchdog.cancel()
        sim.engine.remove(conn)
        conn.stop()
    return ws


async def _auth_watchdog(conn: Connection, seconds: float) -> None:
    await asyncio.sleep(seconds)
    if not conn.authenticated and not conn.closing:
        conn.fail(404)


def _decode(data: bytes | str) -> Any:
    if isinstance(data, bytes):
        return msgpack.unpackb(data)
    return orjson.loads(data)


def _handle(conn: Connection, sim: SimState, data: bytes | str) -> None:
    try:
        msg = _decode(data)
    except Exception:
        conn.fail(400)
        return
    if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
        conn.fail(400)
        return
    action = msg["action"]
    if action == "auth":
        key, secret = msg.get("key"), msg.get("secret")
        if not isinstance(key, str) or not isinstance(secret, str):
            conn.fail(400)
        elif conn.authenticated:
            conn.fail(403)
        else:
            sim.engine.authenticate(conn, key, secret)
    elif action in ("subscribe", "unsubscribe"):
        if not conn.authenticated:
            conn.fail(401)
        else:
            sim.engine.change_subscription(conn, action, msg)
    else:
        conn.fail(400)
