"""Downsampling per pixel column keeps every bar's extremes and never sends a series whole."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dashboard.downsample import bar_columns, clamp_width, line_extremes, window


def _bars(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    c = 100 + np.cumsum(rng.normal(size=n))
    o = np.roll(c, 1)
    h = np.maximum(o, c) + rng.random(n)
    low = np.minimum(o, c) - rng.random(n)
    return np.arange(n, dtype=np.int64) * 60_000, o, h, low, c, rng.random(n)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), width=st.integers(10, 500))
def test_columns_merge_bars_without_losing_an_extreme_or_a_volume(n, width):
    t, o, h, low, c, v = _bars(n)
    ct, co, ch, cl, cc, cv = bar_columns(t, o, h, low, c, v, width)
    assert len(ct) <= width and len(ct) == len(cc)
    assert np.all(np.diff(ct) > 0)
    assert ch.max() == h.max() and cl.min() == low.min()
    assert co[0] == o[0] and cc[-1] == c[-1]
    assert np.isclose(cv.sum(), v.sum())


def test_a_short_series_is_sent_as_it_is():
    t, o, h, low, c, v = _bars(50)
    assert bar_columns(t, o, h, low, c, v, 100)[4] is c


def test_a_long_line_keeps_its_ends_and_extremes_in_time_order():
    t, _, _, _, c, _ = _bars(100_000)
    lt, lv = line_extremes(t, c, 200)
    assert len(lt) <= 2 * 200 + 2
    assert np.all(np.diff(lt) > 0)
    assert lv.max() == c.max() and lv.min() == c.min()
    assert lt[0] == t[0] and lt[-1] == t[-1]


def test_a_zoomed_window_is_cut_by_stamps_and_refines_the_columns():
    t, o, h, low, c, v = _bars(100_000)
    whole = bar_columns(t, o, h, low, c, v, 500)[0]
    rows = window(t, int(t[1000]), int(t[1999]))
    assert (rows.start, rows.stop) == (1000, 2000)
    zoomed = bar_columns(t[rows], o[rows], h[rows], low[rows], c[rows], v[rows], 500)[0]
    assert np.median(np.diff(zoomed)) < np.median(np.diff(whole))
    assert window(t, int(t[-1]) + 1, None) == slice(len(t), len(t))


def test_a_requested_width_is_held_to_a_screen():
    assert clamp_width(0) == 10 and clamp_width(10**9) == 5000 and clamp_width(800) == 800
