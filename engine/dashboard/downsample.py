"""Series cut to the chart's width on the server: bars merged per pixel column (first open,
highest high, lowest low, last close, summed volume) and lines kept as each column's
minimum and maximum, so extremes survive at every zoom level and no series is sent whole."""

from __future__ import annotations

import numpy as np

MIN_WIDTH, MAX_WIDTH = 10, 5000


def clamp_width(width: int) -> int:
    """A requested column count held to what a screen can show."""
    return max(MIN_WIDTH, min(MAX_WIDTH, int(width)))


def column_starts(n: int, width: int) -> np.ndarray:
    """The first row of each of at most ``width`` equal columns of ``n`` rows."""
    return np.unique(np.linspace(0, n, min(n, width), endpoint=False).astype(np.int64))


def bar_columns(t: np.ndarray, o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray,
                v: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """Bars in time order merged into at most ``width`` columns; each column is stamped with
    its first bar's open time."""
    n = len(t)
    if n <= width:
        return t, o, h, low, c, v
    starts = column_starts(n, width)
    lasts = np.append(starts[1:], n) - 1
    return (t[starts], o[starts], np.maximum.reduceat(h, starts), np.minimum.reduceat(low, starts),
            c[lasts], np.add.reduceat(v, starts))


def line_extremes(t: np.ndarray, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A line in time order, or for a long one the first and last points and each column's
    minimum and maximum, in time order (at most about ``2 * width`` points)."""
    n = len(values)
    if n <= 2 * width:
        return t, values
    starts = column_starts(n, width)
    ends = np.append(starts[1:], n)
    picks = [np.array([0, n - 1])]
    safe = np.where(np.isfinite(values), values, 0.0)
    spans = list(zip(starts, ends, strict=True))
    picks.append(np.array([lo + int(safe[lo:hi].argmin()) for lo, hi in spans]))
    picks.append(np.array([lo + int(safe[lo:hi].argmax()) for lo, hi in spans]))
    keep = np.unique(np.concatenate(picks))
    return t[keep], values[keep]


def window(t: np.ndarray, start: int | None, end: int | None) -> slice:
    """The rows of sorted stamps ``t`` within ``[start, end]`` (either bound open when None)."""
    lo = 0 if start is None else int(np.searchsorted(t, start, side="left"))
    hi = len(t) if end is None else int(np.searchsorted(t, end, side="right"))
    return slice(lo, max(lo, hi))
