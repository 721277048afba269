"""The gap rule and the direct-get helpers, without a server."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry
from raxx_md_client.cli import format_event
from raxx_md_client.recovery import (
    ClientMetrics,
    FastHeadersClient,
    Gap,
    GapReason,
    SequenceBook,
    batch_request,
    parse_time,
    stamp,
)

SUBJ = "md.rt.stocks.quotes.AAPL"


def test_in_order_messages_are_no_gap_and_repeats_are_duplicates() -> None:
    book = SequenceBook()
    assert book.missing_after(SUBJ, 0) is None  # first message ever: nothing to recover
    book.delivered(SUBJ, 5)
    assert book.missing_after(SUBJ, 5) is None
    assert book.is_duplicate(SUBJ, 5)
    assert book.is_duplicate(SUBJ, 3)
    assert not book.is_duplicate(SUBJ, 6)


def test_a_previous_sequence_above_the_last_delivered_is_a_gap_from_the_next_one() -> None:
    book = SequenceBook()
    book.delivered(SUBJ, 5)
    assert book.missing_after(SUBJ, 9) == 6


def test_no_stored_predecessor_after_a_delivered_one_is_checked_against_the_window() -> None:
    book = SequenceBook()
    book.delivered(SUBJ, 5)
    assert book.missing_after(SUBJ, 0) == 6
    assert book.missing_after("md.rt.stocks.quotes.NEW", 0, floor=50) is None  # a new subject


def test_a_new_subject_of_a_wildcard_is_checked_against_the_subscription_floor() -> None:
    book = SequenceBook()
    assert book.missing_after("md.rt.stocks.quotes.MSFT", 40, floor=50) is None  # before us
    assert book.missing_after("md.rt.stocks.quotes.MSFT", 60, floor=50) == 51  # missed


def test_forget_drops_only_the_streams_no_longer_read() -> None:
    book = SequenceBook()
    book.delivered(SUBJ, 5)
    book.delivered("md.delayed.stocks.quotes.AAPL", 7)
    book.forget({"md.delayed.stocks.quotes.AAPL"})
    assert book.last == {"md.delayed.stocks.quotes.AAPL": 7}


def test_batch_request_by_sequence_and_by_time() -> None:
    assert json.loads(batch_request("mdcap.rt.stocks.quotes.A", seq=7, batch=10)) == {
        "next_by_subj": "mdcap.rt.stocks.quotes.A", "batch": 10, "seq": 7,
    }  # fmt: skip
    start = dt.datetime(2026, 11, 26, 14, 30, tzinfo=dt.UTC)
    body = json.loads(batch_request("mdcap.rt.>", start=start, batch=1))
    assert body["start_time"] == "2026-11-26T14:30:00.000000Z"
    with pytest.raises(ValueError, match="aware"):
        batch_request("mdcap.rt.>", start=dt.datetime(2026, 1, 1), batch=1)  # noqa: DTZ001


def test_stamp_reads_the_republish_headers_and_maps_the_capture_subject() -> None:
    headers = {
        "Nats-Stream": "MD_RT_STOCKS", "Nats-Subject": "mdcap.rt.stocks.quotes.AAPL",
        "Nats-Sequence": "12", "Nats-Last-Sequence": "9",
        "Nats-Time-Stamp": "2026-11-26T01:18:07.745408247Z",
    }  # fmt: skip
    st = stamp(Msg(None, subject="_INBOX_U.x.y", headers=headers))  # type: ignore[arg-type]
    assert st is not None
    assert (st.stream, st.subject, st.seq, st.last_seq) == ("MD_RT_STOCKS", SUBJ, 12, 9)
    assert parse_time(st.time) == dt.datetime(2026, 11, 26, 1, 18, 7, 745408, tzinfo=dt.UTC)
    assert stamp(Msg(None, subject=SUBJ)) is None  # type: ignore[arg-type]


def test_metrics_live_in_the_registry_the_application_passes() -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    metrics.gaps.labels("unrecoverable").inc()
    assert registry.get_sample_value("raxx_md_client_gaps_total", {"outcome": "unrecoverable"}) == 1
    assert registry.get_sample_value("raxx_md_client_gaps_total", {"outcome": "recovered"}) == 0


def test_the_cli_prints_a_gap_line() -> None:
    gap = Gap(SUBJ, "MD_RT_STOCKS", 2, 201, GapReason.EXPIRED)
    assert "GAP" in format_event(gap, "rt")
    assert "2..201" in format_event(gap, "rt")


@pytest.mark.parametrize(
    "raw",
    [
        b"Nats-Stream: MD_RT_STOCKS\r\nNats-Subject: mdcap.rt.stocks.quotes.AAPL\r\n"
        b"Nats-Sequence: 12\r\nNats-Time-Stamp: 2026-11-26T01:18:07.745408247Z\r\n"
        b"Nats-Last-Sequence: 9\r\n\r\n",
        b"A:b\r\nno colon\r\nBad Name: x\r\n\xff: y\r\nC:\t v \r\nU: \xe2\x82\xac\xff\r\n",
        b"",
        b": empty name\r\n",
    ],
)
def test_the_fast_header_parser_gives_the_same_result_as_nats_py(raw: bytes) -> None:
    assert FastHeadersClient._parse_header_lines(raw) == Client._parse_header_lines(raw)


@given(
    st.lists(
        st.lists(
            st.sampled_from(
                [
                    b"A",
                    b"b",
                    b"-",
                    b":",
                    b" ",
                    b"\t",
                    b"\x1c",
                    b"\x0b",
                    b"\x85",
                    b"\xc2\xa0",
                    b"\xe2\x82\xac",
                    b"\xff",
                    b"\r",
                    b"\n",
                    b"9",
                ]
            ),
            max_size=12,
        ).map(b"".join),
        max_size=8,
    ).map(b"\r\n".join)
)
def test_the_fast_header_parser_matches_nats_py_on_any_bytes(raw: bytes) -> None:
    assert FastHeadersClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
