"""Corrections and cancels change the simulator's tape: the day's close follows them."""

from __future__ import annotations

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
