"""Strategy plot points placed on a price chart's candles: each point belongs to the newest
bar closed at or before its stamp (the bar being handled when the strategy plotted it), and
a candle merged from several bars shows the last point of its bars, so the line has one
value per drawn candle and shares the candles' times."""

from __future__ import annotations

import numpy as np


def bar_of(close_ns: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
    """For each stamp, the index of the newest bar (closes in time order) closed at or before
    it; -1 for a stamp before the first close."""
    return np.searchsorted(close_ns, ts_ns, side="right") - 1


def on_columns(bars: np.ndarray, values: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Per column of bars (``starts``: each column's first bar of ``n``), the value of the last
    point whose bar (``bars``, in time order) is in it; NaN where a column has none."""
    out = np.full(len(starts), np.nan)
    inside = (bars >= 0) & (bars < n)
    bars, values = bars[inside], values[inside]
    if not len(bars):
        return out
    column = np.searchsorted(starts, bars, side="right") - 1
    last = np.append(column[1:] != column[:-1], True)
    out[column[last]] = values[last]
    return out
