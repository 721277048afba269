"""md-client gap detection and recovery against a real nats-server with JetStream.

The four capture streams are declared here with the hub's config idea (subjects
`mdcap.<path>.<asset>.>`, RePublish to `md.<path>.<asset>.>`, allow_direct, file storage);
quotes are published on `mdcap...` at ~1k msg/s while the consumer's TCP connection is cut,
nats-server is restarted (same store), or the credential is swapped. Every test counts zero
lost and zero duplicated messages, in order per subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path as FsPath

import nats
import pytest
import pytest_asyncio
from market_data_hub.adapters.nats import capture_config
from market_data_hub.settings import Settings as HubSettings
from prometheus_client import CollectorRegistry
from raxx_contracts import AssetClass, Channel, Path, Quote, encode, subjects, utc_now
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from raxx_md_client import Credential, Gap, GapReason, MdClient, WindowExpiredError

pytestmark = pytest.mark.integration

TOKEN = subjects.user_token("gap-test-user")


def quote(n: int, symbol: str) -> bytes:
    return encode(
        Quote(symbol=symbol, timestamp=utc_now(), feed="iex", bid_price=Decimal("10.5"),
              bid_size=n, ask_price=Decimal("10.6"), ask_size=1)
    )  # fmt: skip


def cap(symbol: str) -> str:
    return subjects.to_capture(subjects.rt(AssetClass.STOCKS, Channel.QUOTES, symbol))


@dataclass
class CaptureServer:
    """A JetStream nats-server on a fixed port and store, restartable."""

    state: FsPath
    server: servers.Server

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self) -> None:
        port = self.server.port
        self.server.stop()
        self.server = servers.start_nats(self.state, port=port)


async def declare_streams(url: str, max_msgs: int = -1) -> None:
    """The four capture streams as the hub declares them (`max_msgs` to make a window expire)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for path in Path:
        for asset in AssetClass:
            cfg = capture_config(path, asset, HubSettings())
            cfg.max_msgs = max_msgs
            await js.add_stream(cfg)
    await nc.close()


@pytest.fixture
def capture_server(tmp_path: FsPath) -> Iterator[CaptureServer]:
    state = tmp_path / "nats"
    srv = CaptureServer(state, servers.start_nats(state, port=free_port()))
    yield srv
    srv.server.stop()


class Proxy:
    """A TCP proxy between the client and nats-server whose connections can be cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.open = True
        self.refused: asyncio.Queue[None] = asyncio.Queue()  # one item per refused attempt
        self._conns: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            self.refused.put_nowait(None)
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        if not self.open:  # cut while the upstream connection was being opened
            writer.transport.abort()
            up_w.transport.abort()
            return
        self._conns += [writer, up_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        """Drop every connection and refuse new ones until `open = True`."""
        self.open = False
        for w in self._conns:
            w.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


def source(ttl: int = 3600) -> object:
    async def issue(public_key: str) -> Credential:
        return Credential(
            tier="pro", jwt="eyJhbGciOiJub25lIn0.e30.x",
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl), ttl_seconds=ttl,
            paths={AssetClass.STOCKS: Path.RT, AssetClass.OPTIONS: Path.DELAYED},
            inbox_prefix=f"_INBOX_U.{TOKEN}", http_token="",
            interest_subject=subjects.interest("pro", TOKEN),
        )  # fmt: skip

    return issue


@dataclass
class Publisher:
    """Publishes numbered quotes on the capture subjects, retrying (deduplicated by msg id)
    through a server restart, so the stream holds each number exactly once."""

    url: str
    symbols: tuple[str, ...]
    sent: int = 0
    _at: dict[int, asyncio.Event] = field(default_factory=dict)

    async def reached(self, n: int) -> None:
        """Returns once `n` messages are stored."""
        if self.sent < n:
            await self._at.setdefault(n, asyncio.Event()).wait()

    async def run(self, total: int, rate: float = 1000.0, start: int = 0) -> None:
        nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        js = nc.jetstream()
        step = 20
        try:
            for n in range(start, start + total):
                sym = self.symbols[n % len(self.symbols)]
                while True:
                    try:
                        await js.publish(cap(sym), quote(n, sym), headers={"Nats-Msg-Id": str(n)})
                        break
                    except Exception:  # server restarting: retry the same id
                        await asyncio.sleep(0.05)
                self.sent = n + 1
                if (ev := self._at.get(self.sent)) is not None:
                    ev.set()
                if n % step == 0:
                    await asyncio.sleep(step / rate)
        finally:
            await nc.close()


async def collect(client: MdClient, total: int, within: float = 30.0) -> list[Quote | Gap]:
    got: list[Quote | Gap] = []
    count = 0
    try:
        async with asyncio.timeout(within):
            while count < total:
                event = await client.next()
                assert isinstance(event, Quote | Gap)
                got.append(event)
                count += isinstance(event, Quote)
    except TimeoutError:
        nums = {e.bid_size for e in got if isinstance(e, Quote)}
        missing = sorted(set(range(max(nums, default=0))) - nums)
        raise AssertionError(f"got {count}/{total}; missing {missing[:20]}") from None
    return got


def assert_exact(events: list[Quote | Gap], expected: range, symbols: tuple[str, ...]) -> None:
    quotes = [e for e in events if isinstance(e, Quote)]
    nums = [q.bid_size for q in quotes]
    assert len(nums) == len(set(nums)), "duplicates delivered"
    assert sorted(nums) == list(expected), f"lost: {sorted(set(expected) - set(nums))[:10]}"
    for sym in symbols:
        per = [q.bid_size for q in quotes if q.symbol == sym]
        assert per == sorted(per), f"{sym} out of order"


async def started(url: str, symbols: list[str], **kwargs: object) -> MdClient:
    client = MdClient(url, source(), **kwargs)  # type: ignore[arg-type]
    await client.start()
    await client.subscribe(symbols)
    return client


@pytest_asyncio.fixture
async def proxy(capture_server: CaptureServer) -> AsyncIterator[Proxy]:
    p = Proxy(capture_server.server.port)
    await p.start()
    yield p
    await p.close()


async def test_cut_connection_loses_and_duplicates_nothing(
    capture_server: CaptureServer, proxy: Proxy
) -> None:
    await declare_streams(capture_server.url)
    syms = ("AAPL", "MSFT")
    registry = CollectorRegistry()
    client = await started(proxy.url, list(syms), registry=registry, reconnect_time_wait=0.2)
    wild = await started(proxy.url, ["*"], reconnect_time_wait=0.2)
    pub = Publisher(capture_server.url, syms)
    total = 4000
    task = asyncio.create_task(pub.run(total))
    for cut_at in (800, 2000, 3000):
        await pub.reached(cut_at)
        proxy.cut()
        await asyncio.sleep(0.4)  # ~400 messages published while the client is cut off
        proxy.open = True
    await task
    events = await collect(client, total)
    assert_exact(events, range(total), syms)
    assert_exact(await collect(wild, total), range(total), syms)
    assert registry.get_sample_value("raxx_md_client_recovered_messages_total")
    assert not registry.get_sample_value("raxx_md_client_gaps_total", {"outcome": "unrecoverable"})
    await client.close()
    await wild.close()


async def test_nats_server_restart_loses_and_duplicates_nothing(
    capture_server: CaptureServer,
) -> None:
    await declare_streams(capture_server.url)
    syms = ("AAPL", "MSFT")
    client = await started(capture_server.url, list(syms), reconnect_time_wait=0.2)
    pub = Publisher(capture_server.url, syms)
    total = 3000
    task = asyncio.create_task(pub.run(total))
    await pub.reached(1000)
    await asyncio.to_thread(capture_server.restart)
    await task
    assert_exact(await collect(client, total), range(total), syms)
    await client.close()


async def test_credential_swaps_while_quotes_flow_lose_and_duplicate_nothing(
    capture_server: CaptureServer,
) -> None:
    await declare_streams(capture_server.url)
    syms = ("AAPL", "MSFT")
    client = MdClient(capture_server.url, source(ttl=2))  # type: ignore[arg-type]
    await client.start()
    await client.subscribe(list(syms))
    pub = Publisher(capture_server.url, syms)
    total = 5000
    await pub.run(total)
    assert_exact(await collect(client, total), range(total), syms)
    assert client.renewals >= 2
    await client.close()


async def test_a_gap_older_than_the_window_is_an_event_and_a_metric(
    capture_server: CaptureServer, proxy: Proxy
) -> None:
    await declare_streams(capture_server.url, max_msgs=100)
    registry = CollectorRegistry()
    client = await started(proxy.url, ["AAPL"], registry=registry, reconnect_time_wait=0.2)
    pub = Publisher(capture_server.url, ("AAPL",))
    await pub.run(1)
    first = await asyncio.wait_for(client.next(), 5)
    assert isinstance(first, Quote)
    proxy.cut()
    await pub.run(300, start=1)  # the stream keeps only the last 100
    proxy.open = True
    events = await collect(client, 100)
    gap = events[0]
    assert isinstance(gap, Gap)
    assert gap.reason is GapReason.EXPIRED
    assert (gap.from_seq, gap.to_seq) == (2, 201)
    assert gap.subject == subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")
    assert [e.bid_size for e in events[1:] if isinstance(e, Quote)] == list(range(201, 301))
    assert registry.get_sample_value("raxx_md_client_gaps_total", {"outcome": "unrecoverable"})
    await client.close()


async def test_start_from_a_time_joins_live_without_a_seam(
    capture_server: CaptureServer,
) -> None:
    await declare_streams(capture_server.url)
    syms = ("AAPL", "MSFT")
    pub = Publisher(capture_server.url, syms)
    await pub.run(200, rate=5000)
    await asyncio.sleep(0.05)
    start = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    await pub.run(300, rate=5000, start=200)
    task = asyncio.create_task(pub.run(1500, start=500))  # live while the history is read
    await asyncio.sleep(0.2)
    client = MdClient(capture_server.url, source())  # type: ignore[arg-type]
    await client.start()
    await client.subscribe(list(syms), start=start)
    await task
    assert_exact(await collect(client, 1800), range(200, 2000), syms)
    await client.close()


async def test_start_before_the_window_is_a_typed_error(capture_server: CaptureServer) -> None:
    await declare_streams(capture_server.url, max_msgs=100)
    start = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    await Publisher(capture_server.url, ("AAPL",)).run(300, rate=5000)
    client = MdClient(capture_server.url, source())  # type: ignore[arg-type]
    await client.start()
    with pytest.raises(WindowExpiredError) as expired:
        await client.subscribe(["AAPL"], start=start)
    assert expired.value.first_available > start
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.subscribe(["AAPL"], start=dt.datetime(2026, 1, 1))  # noqa: DTZ001
    assert client.positions == {}
    await client.close()


async def test_a_predecessor_dropped_by_retention_is_reported_not_ignored(
    capture_server: CaptureServer,
) -> None:
    await declare_streams(capture_server.url, max_msgs=100)
    client = await started(capture_server.url, ["AAPL"])
    await Publisher(capture_server.url, ("AAPL",)).run(1)
    first = await asyncio.wait_for(client.next(), 5)
    assert isinstance(first, Quote)
    await Publisher(capture_server.url, ("MSFT",)).run(200, rate=5000, start=1)
    await Publisher(capture_server.url, ("AAPL",)).run(1, start=201)  # Nats-Last-Sequence 0
    gap = await asyncio.wait_for(client.next(), 5)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.from_seq, gap.to_seq) == (GapReason.EXPIRED, 2, 102)
    after = await asyncio.wait_for(client.next(), 5)
    assert isinstance(after, Quote)
    assert after.bid_size == 201
    await client.close()


async def test_failed_reconnect_attempts_leave_no_socket_open(
    capture_server: CaptureServer, proxy: Proxy
) -> None:
    """Each attempt whose TCP connect succeeds but whose handshake fails must close its socket
    (nats-py overwrites the writer on retry; md-client closes the old one)."""
    await declare_streams(capture_server.url)
    client = await started(proxy.url, ["AAPL"], reconnect_time_wait=0.05)
    proxy.cut()
    async with asyncio.timeout(10):
        for _ in range(3):
            await proxy.refused.get()
    proxy.open = True
    await Publisher(capture_server.url, ("AAPL",)).run(1)
    assert isinstance(await asyncio.wait_for(client.next(), 10), Quote)  # reconnected
    await client.close()
    leaked: list[object] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: leaked.append(u.exc_value)
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not [e for e in leaked if isinstance(e, ResourceWarning)], leaked
