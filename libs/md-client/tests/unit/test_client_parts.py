"""md-client pieces that need no server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from raxx_contracts import AssetClass, Channel, Path, Quote, utc_now
from raxx_md_client.cli import format_event
from raxx_md_client.client import MODELS
from raxx_md_client.credentials import Credential


def test_refresh_at_is_three_quarters_of_the_lifetime() -> None:
    exp = dt.datetime(2026, 1, 1, 0, 15, tzinfo=dt.UTC)
    cred = Credential(
        "free", "jwt", exp, 900, {AssetClass.STOCKS: Path.DELAYED}, "_INBOX_U.X", "h",
        "md.ctl.interest.free.X",
    )  # fmt: skip
    assert cred.refresh_at(0.75) == dt.datetime(2026, 1, 1, 0, 11, 15, tzinfo=dt.UTC)


def test_every_channel_has_a_model() -> None:
    assert MODELS[(AssetClass.STOCKS, Channel.QUOTES)] is Quote
    from raxx_contracts import CHANNELS_BY_ASSET

    assert set(MODELS) == {(a, c) for a, chans in CHANNELS_BY_ASSET.items() for c in chans}


def test_quote_line_is_one_readable_line() -> None:
    q = Quote(symbol="BRK.B", timestamp=utc_now(), feed="iex", bid_price=Decimal("1.5"),
              bid_size=2, ask_price=Decimal("1.6"), ask_size=3)  # fmt: skip
    line = format_event(q, "delayed")
    assert "\n" not in line
    assert "BRK.B" in line
    assert "bid 1.5 x 2" in line
    assert "ask 1.6 x 3" in line
    assert line.endswith("[delayed]")
