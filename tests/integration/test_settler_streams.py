"""eod-settler owns SETTLES and CORPACTIONS: its one declaration creates them or restores a
drifted config, and its faststream broker (publishers with declare=False) never rewrites them
(nats.md gotcha 1: a re-declare overwrites the owner's config)."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import StreamConfig
from raxx_contracts import subjects

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
