"""The delay line reads stream sequences from reply subjects exactly as nats-py's metadata does."""

from __future__ import annotations

import pytest
from market_data_hub.delay_line import stream_seq
from nats.aio.msg import Msg


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.MDH_DELAY.MDH_delay_line.1.4242.17.1700000000000000000.9",
        "$JS.ACK._.ACCHASH.MDH_DELAY.MDH_delay_line.1.4242.17.1700000000000000000.9.rnd",
        "$JS.ACK.dom.ACCHASH.MDH_DELAY.MDH_delay_line.3.99.5.1700000000000000000.0.x",
    ],
)
def test_stream_seq_matches_nats_metadata(reply: str) -> None:
    msg = Msg(_client=None, subject="md.rt.stocks.quotes.AAPL", reply=reply)  # type: ignore[arg-type]
    assert stream_seq(msg) == msg.metadata.sequence.stream
