"""`raxx-md replay` argument handling: --from and --speed."""

from __future__ import annotations

import datetime as dt

import pytest
from raxx_md_client import cli


def test_from_is_new_york_time_on_the_date_or_an_instant() -> None:
    day = dt.date(2026, 7, 1)
    start = cli.replay_start(day, "09:30")
    assert start is not None
    assert start.astimezone(dt.UTC) == dt.datetime(2026, 7, 1, 13, 30, tzinfo=dt.UTC)
    instant = cli.replay_start(day, "2026-07-01T14:00:00+00:00")
    assert instant == dt.datetime(2026, 7, 1, 14, tzinfo=dt.UTC)
    assert cli.replay_start(day, None) is None
    with pytest.raises(ValueError, match="--from"):
        cli.replay_start(day, "half past nine")


def test_speed_is_positive_bounded_or_max() -> None:
    args = cli._parser().parse_args(["replay", "--date", "2026-07-01", "--speed", "10", "AAPL"])
    assert args.speed == 10.0
    args = cli._parser().parse_args(["replay", "--date", "2026-07-01", "AAPL"])
    assert args.speed is None
    for bad in ("0", "-2", "fast", "1e9"):
        with pytest.raises(SystemExit):
            cli._parser().parse_args(["replay", "--date", "2026-07-01", "--speed", bad, "AAPL"])
