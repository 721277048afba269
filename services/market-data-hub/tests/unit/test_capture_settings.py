"""The capture streams' config: window validation and the exact stream shape."""

from __future__ import annotations

import pytest
from market_data_hub.adapters.nats import capture_config
from market_data_hub.settings import Settings
from nats.js.api import DiscardPolicy, StorageType
from pydantic import ValidationError
from raxx_contracts import AssetClass, Path


def test_capture_window_defaults_to_a_day_and_must_outlast_the_delay() -> None:
    assert Settings().capture_window_seconds == 86_400
    Settings(delay_seconds=900, capture_window_seconds=900 * 1.1 + 60)
    with pytest.raises(ValidationError, match="MDH_CAPTURE_WINDOW_SECONDS"):
        Settings(delay_seconds=900, capture_window_seconds=1000)


def test_capture_stream_stores_mdcap_and_republishes_on_the_public_path() -> None:
    cfg = capture_config(Path.DELAYED, AssetClass.OPTIONS, Settings(capture_max_bytes=10**9))
    assert cfg.name == "MD_DELAYED_OPTIONS"
    assert cfg.subjects == ["mdcap.delayed.options.>"]
    assert cfg.republish is not None
    assert (cfg.republish.src, cfg.republish.dest) == (
        "mdcap.delayed.options.>",
        "md.delayed.options.>",
    )
    assert not cfg.republish.headers_only
    assert cfg.allow_direct is True
    assert cfg.storage is StorageType.FILE
    assert cfg.discard is DiscardPolicy.OLD
    assert (cfg.max_age, cfg.max_bytes) == (86_400, 10**9)
    assert capture_config(Path.RT, AssetClass.STOCKS, Settings()).max_bytes == -1
