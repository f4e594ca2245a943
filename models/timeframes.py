"""Bar intervals and multi-timeframe aggregation: coarser bars built from base bars,
each visible to a base row only once it has closed (no look-ahead).

Coarse bars are aligned to the Unix epoch. A coarse bar covering ``[T, T + I)`` is closed
at base row i when ``open_time[i] + base_ms >= T + I``: either row i is its last base
bar, or row i already lies beyond it (a gap). :class:`CoarseBarBuilder` applies the same
rule one bar at a time, so streaming and batch agree.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
FIELDS = ("open_time", "open", "high", "low", "close", "volume", "turnover", "trades")


def interval_ms(interval: str) -> int:
    """Milliseconds of an interval written like ``15m``, ``1h``, ``4h``, ``1d``."""
    match = re.fullmatch(r"(\d+)([smhdw])", interval.strip().lower())
    if not match or int(match[1]) == 0:
        raise ValueError(f"bad interval {interval!r}: use a number and one of s, m, h, d, w")
    return int(match[1]) * UNIT_MS[match[2]]


def _merge(start: int, rows: np.ndarray) -> dict:
    """One coarse bar from base rows ``[k, 7]`` (the FIELDS after open_time), in order."""
    return {"open_time": start, "open": rows[0, 0], "high": rows[:, 1].max(),
            "low": rows[:, 2].min(), "close": rows[-1, 3], "volume": rows[:, 4].sum(),
            "turnover": rows[:, 5].sum(), "trades": rows[:, 6].sum()}


def aggregate(bars: pd.DataFrame, base: str, coarse: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Coarse bars from base bars, and for every base row the index of the newest coarse
    bar closed at that row (-1 if none)."""
    base_ms, coarse_ms = interval_ms(base), interval_ms(coarse)
    if coarse_ms <= base_ms or coarse_ms % base_ms:
        raise ValueError(f"timeframe {coarse} must be a multiple of the base interval {base}")
    open_time = bars["open_time"].to_numpy(np.int64)
    values = bars[list(FIELDS[1:])].to_numpy(np.float64)
    bucket = open_time // coarse_ms * coarse_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    groups = np.split(values, starts[1:])
    coarse_bars = pd.DataFrame([_merge(int(bucket[i]), g) for i, g in zip(starts, groups,
                                                                            strict=True)],
                               columns=list(FIELDS))
    ends = bucket[starts] + coarse_ms
    last_closed = np.searchsorted(ends, open_time + base_ms, side="right") - 1
    return coarse_bars, last_closed.astype(np.int64)


class CoarseBarBuilder:
    """Streaming :func:`aggregate`: ``update(bar)`` returns the coarse bars closed by it."""

    def __init__(self, base: str, coarse: str) -> None:
        self.base_ms, self.coarse_ms = interval_ms(base), interval_ms(coarse)
        self._start: int | None = None
        self._rows: list[list[float]] = []

    def _close(self) -> dict:
        bar = _merge(self._start, np.array(self._rows, dtype=np.float64))
        self._start, self._rows = None, []
        return bar

    def update(self, bar) -> list[dict]:
        """Add a base bar (mapping with the kline fields, ``open_time`` in ms)."""
        closed = []
        start = int(bar["open_time"]) // self.coarse_ms * self.coarse_ms
        if self._start is not None and self._start != start:
            closed.append(self._close())
        self._start = start
        self._rows.append([float(bar[f]) for f in FIELDS[1:]])
        if int(bar["open_time"]) + self.base_ms >= start + self.coarse_ms:
            closed.append(self._close())
        return closed
