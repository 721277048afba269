"""eod-settler owns SETTLES and CORPACTIONS: its one declaration creates them or restores a
drifted config, and its faststream broker (publishers with declare=False) never rewrites them
(nats.md gotcha 1: a re-declare overwrites the owner's config)."""

from __future__ import annotations

import datetime as dt
import json

import nats
import pytest
from eod_settler.adapters.nats import publish_batch
from nats.js.api import StreamConfig
from raxx_contracts import AssetClass, subjects

from tests.integration.test_settler_helpers import make_settings, open_runtime

pytestmark = pytest.mark.integration
DAY = 86_400.0


async def _configs(url: str) -> dict[str, StreamConfig]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        return {
            name: (await js.stream_info(name)).config
            for name in (subjects.SETTLES_STREAM, subjects.CORPACTIONS_STREAM)
        }
    finally:
        await nc.close()


async def test_streams_declared_once_and_drift_restored(own_nats: str, postgres_dsn: str) -> None:
    nc = await nats.connect(own_nats)
    try:  # what a bare faststream JStream("SETTLES") would have left behind
        await nc.jetstream().add_stream(
            StreamConfig(
                name=subjects.SETTLES_STREAM, subjects=list(subjects.SETTLES_STREAM_SUBJECTS),
                duplicate_window=120, max_age=0,
            )
        )  # fmt: skip
    finally:
        await nc.close()
    settings = make_settings(own_nats, postgres_dsn, "http://127.0.0.1:1")
    rt = await open_runtime(settings)
    try:
        during = await _configs(own_nats)
    finally:
        await rt.close()
    after = await _configs(own_nats)
    for configs in (during, after):
        for name, cfg in configs.items():
            assert cfg.duplicate_window == settings.dedup_window_seconds, name
            assert cfg.max_age == settings.stream_max_age_days * DAY, name
            assert cfg.deny_delete is True, name
            assert cfg.allow_direct is True, name
            assert (cfg.max_msgs_per_subject or -1) == -1, name
    assert sorted(after[subjects.CORPACTIONS_STREAM].subjects or []) == [subjects.CORPACTIONS_ANY]


async def test_relay_batch_reaches_the_stream_in_id_order(own_nats: str, postgres_dsn: str) -> None:
    """publish_batch sends a batch concurrently through faststream (one PubAck wait each) yet
    the stream holds the messages in the order given: a revision never overtakes the one
    before it, and a consumer reads a date's settles in the order they were written."""
    settings = make_settings(own_nats, postgres_dsn, "http://127.0.0.1:1")
    rt = await open_runtime(settings)
    day = dt.date(2025, 12, 23)
    try:
        pubs = rt.relay.publishers
        batch = []
        for i in range(600):
            symbol = f"S{i % 200:03d}"  # three revisions of each of 200 symbols
            revision = i // 200 + 1
            batch.append((
                subjects.settle(AssetClass.STOCKS, day, symbol),
                subjects.settle_msg_id(day, symbol, revision),
                f'{{"i":{i}}}'.encode(),
            ))  # fmt: skip
        batch.append((subjects.corpactions(day, "S000"), "corp-1", b'{"i":600}'))
        results = await publish_batch(pubs, batch, settings.publish_timeout_seconds)
        assert results == [(True, False)] * len(batch)
        again = await publish_batch(pubs, batch[:5], settings.publish_timeout_seconds)
        assert again == [(True, True)] * 5  # Nats-Msg-Id: duplicates, not stored again
        seen = []
        for stream, count in ((subjects.SETTLES_STREAM, 600), (subjects.CORPACTIONS_STREAM, 1)):
            for seq in range(1, count + 1):
                msg = await rt.js.get_msg(stream, seq)
                seen.append(json.loads(msg.data or b"{}")["i"])
        assert seen == list(range(601))
        assert (await rt.js.stream_info(subjects.SETTLES_STREAM)).state.messages == 600
    finally:
        await rt.close()
