"""Corrections and cancels change the simulator's tape: the day's close follows them."""

from __future__ import annotations

from datetime import date

import pytest
from alpaca_sim.late_closes import LateCloses
from alpaca_sim.live import SymbolState

T0 = 1_764_000_000 * 1_000_000_000


def _state() -> SymbolState:
    return SymbolState("AAPL", 100.0, 100.0, 0.02, "C", "V", 0)


def test_correcting_the_newest_print_moves_the_close_and_volume() -> None:
    st = _state()
    st.trade(100.0, 100, T0)
    tid = st.trade(101.0, 100, T0 + 1)
    done = st.correct(tid, 100.5, 300)
    assert done is not None
    new_id, old_price, old_size = done
    assert (old_price, old_size) == (101.0, 100)
    assert new_id > tid
    assert (st.day.c, st.day.v) == (100.5, 400)


def test_cancelling_the_newest_print_falls_back_to_the_one_before() -> None:
    st = _state()
    st.trade(100.0, 100, T0)
    tid = st.trade(101.0, 100, T0 + 1)
    assert st.cancel(tid) == (101.0, 100)
    assert (st.day.c, st.day.v) == (100.0, 100)
    assert st.cancel(tid) is None  # a print is busted once


def test_busting_an_older_print_keeps_the_close() -> None:
    st = _state()
    first = st.trade(100.0, 100, T0)
    st.trade(101.0, 100, T0 + 1)
    st.cancel(first)
    assert st.day.c == 101.0


def test_past_session_edits_move_the_close_only_through_its_last_standing_print() -> None:
    late = LateCloses()
    day = date(2025, 12, 23)
    prices, sizes = [10.0, 11.0, 12.0, 13.0], [100, 100, 100, 100]
    late.edit_print("X", day, prices, sizes, 1, None)  # not the last: no close
    late.edit_print("X", day, prices, sizes, 2, (12.5, 100))
    assert late.get("X", day) is None
    assert late.edit_print("X", day, prices, sizes, None, (13.0, 200)) == (3, (13.0, 100))
    assert late.get("X", day) is None  # same price: the close did not change
    late.edit_print("X", day, prices, sizes, None, None)  # bust the last: the corrected 2nd
    assert late.get("X", day) == 12.5
    late.edit_print("X", day, prices, sizes, None, None)  # skips busted print 1
    assert late.get("X", day) == 10.0
    with pytest.raises(ValueError, match="no standing print"):
        late.edit_print("X", day, prices, sizes, 1, None)  # busted once
