"""md-replay against a real nats-server: archive, replay equal to live, pacing, stop, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from md_replay.__main__ import archive
from md_replay.domain import session_date, session_window
from md_replay.replay import Replayer
from nats.aio.client import Client
from nats.aio.msg import Msg
from raxx_contracts import (
    AssetClass,
    Channel,
    ErrorReply,
    ReplayEnd,
    ReplayProgress,
    ReplayRequest,
    decode,
    encode,
    subjects,
)
from raxx_md_client.replay import ReplayMessage, ReplayRefused, replay

from tests.integration.md_replay_fixtures import (
    OTHER,
    TOKEN,
    capture_streams,
    publish_tape,
    running_replay,
    settings,
)

pytestmark = pytest.mark.integration

SYMS = ["AAPL", "MSFT", "BRK.B"]


def today() -> dt.date:
    return session_date(time.time_ns())


async def collect(it: Any) -> tuple[list[ReplayMessage], list[ReplayProgress], ReplayEnd | None]:
    msgs: list[ReplayMessage] = []
    progress: list[ReplayProgress] = []
    end = None
    async for item in it:
        if isinstance(item, ReplayMessage):
            msgs.append(item)
        elif isinstance(item, ReplayProgress):
            progress.append(item)
        else:
            end = item
    return msgs, progress, end


def replayer(app: Any) -> Replayer:
    r = app.state.md.replayer
    assert r is not None
    return r


async def wait_for(cond: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def js_nc(own_nats: str) -> Any:
    nc = await nats.connect(own_nats)
    await capture_streams(nc.jetstream())
    yield nc
    await nc.drain()


@pytest.mark.parametrize("store", ["file", "object"])
async def test_archived_replay_equals_what_live_subscribers_saw(
    own_nats: str, js_nc: Client, tmp_path: Path, store: str
) -> None:
    live: list[tuple[str, bytes]] = []

    async def on_live(msg: Msg) -> None:
        live.append((msg.subject, msg.data))

    sub = await js_nc.subscribe("md.rt.stocks.*.*", cb=on_live)
    await js_nc.flush()
    await publish_tape(js_nc.jetstream(), [*SYMS, "TSLA"], 3000)
    await wait_for(lambda: len(live) == 3000)
    await sub.unsubscribe()
    url = f"file://{tmp_path}/archive" if store == "file" else ""
    s = settings(own_nats, archive_url=url)
    assert await archive(s, today()) == 0
    assert await archive(s, today()) == 0  # re-runnable, same result
    async with running_replay(s) as (app, _):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            msgs, progress, end = await collect(
                replay(user, "pro", TOKEN, today(), SYMS,
                       channels=(Channel.QUOTES, Channel.TRADES))
            )  # fmt: skip
        finally:
            await user.drain()
        wanted = [(s_, d) for s_, d in live if subjects.parse_market(s_).symbol in SYMS]
        assert [(m.subject, m.payload) for m in msgs] == wanted
        assert end is not None
        assert end.reason == "complete"
        assert end.messages == len(wanted)
        assert progress
        assert progress[-1].messages == len(wanted)
        assert all(m.event is not None for m in msgs if ".quotes." in m.subject)
        assert [m.seq for m in msgs] == sorted(m.seq for m in msgs)
        await wait_for(lambda: not replayer(app).running)


async def test_free_tier_sees_delayed_subjects_and_from_skips_earlier(
    own_nats: str, js_nc: Client, tmp_path: Path
) -> None:
    await publish_tape(js_nc.jetstream(), ["AAPL"], 200)
    s = settings(own_nats, archive_url=f"file://{tmp_path}/a", delay_seconds=0)
    await archive(s, today())
    async with running_replay(s):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            full, _, _ = await collect(replay(user, "free", TOKEN, today(), ["AAPL"]))
            assert len(full) == 200
            assert all(m.subject.startswith("md.delayed.stocks.") for m in full)
            cut = full[120].ts_ns
            start = dt.datetime.fromtimestamp(cut / 1e9, dt.UTC)
            part, _, _ = await collect(replay(user, "free", TOKEN, today(), ["AAPL"], start=start))
        finally:
            await user.drain()
    assert part
    assert all(m.ts_ns >= cut - 1000 for m in part)
    assert [m.seq for m in part] == [m.seq for m in full if m.ts_ns >= part[0].ts_ns]


async def test_speed_paces_and_max_speed_does_not(
    own_nats: str, js_nc: Client, tmp_path: Path
) -> None:
    js = js_nc.jetstream()
    t0 = time.monotonic()
    for i in range(11):  # 1 s of original time
        await publish_tape(js, ["AAPL"], 1)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))
    s = settings(own_nats, archive_url=f"file://{tmp_path}/a")
    await archive(s, today())
    async with running_replay(s):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            t = time.monotonic()
            paced, _, _ = await collect(replay(user, "pro", TOKEN, today(), ["AAPL"], speed=2))
            paced_s = time.monotonic() - t
            t = time.monotonic()
            fast, _, _ = await collect(replay(user, "pro", TOKEN, today(), ["AAPL"]))
            fast_s = time.monotonic() - t
        finally:
            await user.drain()
    span = (paced[-1].ts_ns - paced[0].ts_ns) / 1e9
    assert len(paced) == len(fast) == 11
    assert 0.8 * span / 2 <= paced_s <= span / 2 + 1.0
    assert fast_s < 0.8 * span / 2


async def test_stop_midway_releases_consumer_task_and_gauge(own_nats: str, js_nc: Client) -> None:
    js = js_nc.jetstream()
    await publish_tape(js, ["AAPL"], 20_000)
    s = settings(own_nats, archive_url="memory://stop", window=2, ack_every=1, frame_records=100)
    async with running_replay(s) as (app, _):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            got = 0
            async for item in replay(user, "pro", TOKEN, today(), ["AAPL"]):  # capture source
                if isinstance(item, ReplayMessage):
                    got += 1
                    if got == 150:
                        info = await js.stream_info(subjects.capture_stream(
                            subjects.Path.RT, AssetClass.STOCKS))  # fmt: skip
                        assert info.state.consumer_count == 1
                        break
        finally:
            await user.drain()
        r = replayer(app)
        await wait_for(lambda: not r.running)
        info = await js.stream_info("MD_RT_STOCKS")
        assert info.state.consumer_count == 0
        assert not r.reader.open_consumers
        gauge = app.state.metrics.registry.get_sample_value("mdr_replays_active")
        assert gauge == 0
        ended = app.state.metrics.registry.get_sample_value(
            "mdr_replays_ended_total", {"reason": "stopped"}
        )
        assert ended == 1


async def test_silent_consumer_is_ended_by_ack_timeout(own_nats: str, js_nc: Client) -> None:
    await publish_tape(js_nc.jetstream(), ["AAPL"], 5000)
    s = settings(own_nats, archive_url="memory://silent", window=2, ack_every=1, frame_records=10,
                 ack_timeout_seconds=0.5)  # fmt: skip
    async with running_replay(s) as (app, _):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        deliver = f"_INBOX_U.{TOKEN}.raw"
        ends: list[ReplayEnd] = []

        async def on(msg: Msg) -> None:
            if (msg.headers or {}).get("Raxx-Replay") == "end":
                ends.append(decode(ReplayEnd, msg.data))

        await user.subscribe(deliver, cb=on)
        req = ReplayRequest(replay_id="silent", date=today(), symbols=("AAPL",), deliver=deliver)
        await user.request(subjects.replay("pro", TOKEN), encode(req), timeout=5)
        await wait_for(lambda: bool(ends), within=5)
        assert ends[0].reason == "ack_timeout"
        assert ends[0].frames == 2
        await wait_for(lambda: not replayer(app).running)
        assert (await js_nc.jetstream().stream_info("MD_RT_STOCKS")).state.consumer_count == 0
        await user.drain()


async def test_an_oversize_ack_or_stop_is_ignored(own_nats: str, js_nc: Client) -> None:
    """Acks and stops reach every replica and are parsed by each: one larger than a request
    may be (16 KiB) is dropped unparsed, so padding a stop does not make it count."""
    from raxx_contracts import ReplayStop

    await publish_tape(js_nc.jetstream(), ["AAPL"], 2000)
    s = settings(own_nats, archive_url="memory://oversize", window=2, ack_every=1,
                 frame_records=10, ack_timeout_seconds=5)  # fmt: skip
    async with running_replay(s) as (app, _):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            deliver = f"_INBOX_U.{TOKEN}.big"
            ends: list[ReplayEnd] = []

            async def on(msg: Msg) -> None:
                if (msg.headers or {}).get("Raxx-Replay") == "end":
                    ends.append(decode(ReplayEnd, msg.data))

            await user.subscribe(deliver, cb=on)
            req = ReplayRequest(replay_id="big", date=today(), symbols=("AAPL",), deliver=deliver)
            await user.request(subjects.replay("pro", TOKEN), encode(req), timeout=5)
            stop = encode(ReplayStop(replay_id="big"))
            padded = stop[:-1] + b" " * (17 * 1024) + b"}"  # still a valid stop, only larger
            await user.publish(subjects.replay("pro", TOKEN), padded)
            await user.flush()
            await asyncio.sleep(0.5)
            assert replayer(app).running, "a padded stop ended the replay"
            assert not ends
            await user.publish(subjects.replay("pro", TOKEN), stop)
            await wait_for(lambda: not replayer(app).running)
            await wait_for(lambda: bool(ends))
            assert ends[0].reason == "stopped"
        finally:
            await user.drain()


async def _ask(nc: Client, tier: str, body: bytes, token: str = TOKEN) -> ErrorReply:
    msg = await nc.request(subjects.replay(tier, token), body, timeout=5)
    return decode(ErrorReply, msg.data)


async def test_bad_input_gets_typed_errors(own_nats: str, js_nc: Client) -> None:
    s = settings(own_nats, archive_url="memory://bad", retention_days=30, max_symbols=2,
                 max_concurrent_per_user=1, requests_per_minute=9)  # fmt: skip
    async with running_replay(s):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        deliver = f"_INBOX_U.{TOKEN}.r"

        def req(**kw: Any) -> bytes:
            values: dict[str, Any] = {"replay_id": "r1", "date": today(), "symbols": ("AAPL",),
                                      "deliver": deliver}  # fmt: skip
            values.update(kw)
            return encode(ReplayRequest(**values))

        try:
            tomorrow = today() + dt.timedelta(days=1)
            assert (await _ask(user, "pro", req(date=tomorrow))).error == "unknown_date"
            old = today() - dt.timedelta(days=40)
            assert (await _ask(user, "pro", req(date=old))).error == "outside_retention"
            yday = today() - dt.timedelta(days=1)
            assert (await _ask(user, "pro", req(date=yday))).error == "not_archived"
            assert (await _ask(user, "pro", b"{not json")).error == "malformed"
            outside = req(deliver=f"_INBOX_U.{OTHER}.steal")
            assert (await _ask(user, "pro", outside)).error == "malformed"
            many = req(symbols=("AAPL", "MSFT", "IBM"))
            assert (await _ask(user, "pro", many)).error == "too_many_symbols"
            from raxx_contracts import NanoDatetime

            recent = NanoDatetime.from_epoch_ns(time.time_ns() - 60 * 10**9)
            assert (await _ask(user, "free", req(start=recent))).error == "window_expired"
            for _ in range(2):
                await _ask(user, "pro", b"{}")
            assert (await _ask(user, "pro", b"{}")).error == "rate_limited"
        finally:
            await user.drain()


async def test_free_replay_of_current_session_has_nothing_younger_than_the_delay(
    own_nats: str, js_nc: Client
) -> None:
    js = js_nc.jetstream()
    await publish_tape(js, ["AAPL"], 50)
    await asyncio.sleep(2.5)  # the old part must age past the (2 s) delay: real time passing
    boundary = time.time_ns()
    await publish_tape(js, ["AAPL"], 50)
    s = settings(own_nats, archive_url="memory://delay", delay_seconds=2.0)
    async with running_replay(s):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            t_req = time.time_ns()
            free, _, _ = await collect(replay(user, "free", TOKEN, today(), ["AAPL"]))
            pro, _, _ = await collect(replay(user, "pro", TOKEN, today(), ["AAPL"]))
        finally:
            await user.drain()
    assert len(free) == 50
    assert all(m.ts_ns < boundary for m in free)
    assert all(m.ts_ns <= t_req - 2 * 10**9 for m in free)
    assert len(pro) == 100


async def test_a_session_younger_than_the_delay_replays_empty_unless_a_start_is_asked(
    own_nats: str, js_nc: Client
) -> None:
    """Just after midnight New York a free user's view of today is empty: replaying the
    session completes with nothing (as any empty session does), while an explicit start that
    is younger than the delay is refused. (Found by a test that failed only in that window.)"""
    await publish_tape(js_nc.jetstream(), ["AAPL"], 20)
    s = settings(own_nats, archive_url="memory://midnight")  # delay 900 s
    day_start = session_window(today())[0]
    async with running_replay(s) as (app, _):
        replayer(app).now_ns = lambda: day_start + 60 * 10**9  # 00:01 New York
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            got, _, end = await collect(replay(user, "free", TOKEN, today(), ["AAPL"]))
            assert got == []
            assert end is not None
            assert end.reason == "complete"
            start = dt.datetime.fromtimestamp(day_start / 1e9 + 30, dt.UTC)
            with pytest.raises(ReplayRefused) as refused:
                await collect(replay(user, "free", TOKEN, today(), ["AAPL"], start=start))
            assert refused.value.code == "window_expired"
        finally:
            await user.drain()


async def test_refused_replay_raises_typed_error_in_client(own_nats: str, js_nc: Client) -> None:
    s = settings(own_nats, archive_url="memory://refuse")
    async with running_replay(s):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            with pytest.raises(ReplayRefused) as exc:
                await collect(replay(user, "pro", TOKEN, today() + dt.timedelta(days=2), ["AAPL"]))
            assert exc.value.code == "unknown_date"
        finally:
            await user.drain()


async def test_concurrent_replays_are_bounded_per_user_and_stop_answers(
    own_nats: str, js_nc: Client
) -> None:
    for _ in range(3):  # spread over more than one frame span: the paced replay must wait
        await publish_tape(js_nc.jetstream(), ["AAPL"], 1)
        await asyncio.sleep(0.08)
    s = settings(own_nats, archive_url="memory://busy", max_concurrent_per_user=1)
    async with running_replay(s) as (app, _):
        user = await nats.connect(own_nats, inbox_prefix=f"_INBOX_U.{TOKEN}")
        try:
            deliver = f"_INBOX_U.{TOKEN}.slow"
            kinds: list[str] = []

            async def on(msg: Msg) -> None:
                kinds.append((msg.headers or {}).get("Raxx-Replay", "?"))

            await user.subscribe(deliver, cb=on)
            slow = ReplayRequest(replay_id="slow", date=today(), symbols=("AAPL",),
                                 speed=0.0001, deliver=deliver)  # fmt: skip
            accepted = await user.request(subjects.replay("pro", TOKEN), encode(slow), timeout=5)
            assert b'"replay_id":"slow"' in accepted.data
            again = slow.model_copy(update={"replay_id": "second"})
            assert (await _ask(user, "pro", encode(again))).error == "too_many_replays"
            from raxx_contracts import ReplayStop

            stop = ReplayStop(replay_id="slow")
            ended = await user.request(subjects.replay("pro", TOKEN), encode(stop), timeout=5)
            assert decode(ReplayEnd, ended.data).reason == "stopped"
            await wait_for(lambda: not replayer(app).running)
            other = slow.model_copy(update={"replay_id": "third", "speed": None})
            reply = await user.request(subjects.replay("pro", TOKEN), encode(other), timeout=5)
            assert b'"replay_id":"third"' in reply.data
        finally:
            await user.drain()


async def test_http_edge_health_readiness_metrics_and_manifest(
    own_nats: str, js_nc: Client, tmp_path: Path
) -> None:
    import httpx

    await publish_tape(js_nc.jetstream(), ["AAPL", "MSFT"], 30)
    s = settings(own_nats, archive_url=f"file://{tmp_path}/m")
    await archive(s, today())
    async with running_replay(s) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"
            assert "mdr_replays_active" in (await http.get("/metrics")).text
            manifest = (await http.get(f"/v1/sessions/{today()}")).json()
            assert manifest["complete"] is True
            assert manifest["assets"]["stocks"]["messages"] == 30
            assert manifest["assets"]["stocks"]["symbols"]["MSFT"]["messages"] == 15
            missing = await http.get(f"/v1/sessions/{today() - dt.timedelta(days=3)}")
            assert missing.status_code == 404
            assert missing.json()["error"] == "not_archived"
            assert (await http.get("/docs")).status_code == 200
