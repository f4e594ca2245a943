"""The curve's metrics folded over its chunks, a chunk at a time, to the same bits as numpy
over the whole curve: a 10-symbol run of 10M bars has a million close times, and holding
them (with their returns and drawdown temporaries) was 40 bytes a close time at the end of
the run. Three passes over the chunks: counts, drawdown and days; then the pairwise sums of
the curve, its returns and its losses; then the returns' squared deviations for the std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from engine.analysis.pairwise import PairwiseSum
from engine.core.clock import NS_PER_S

DAY_NS = 86400 * NS_PER_S
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # ts (int64), equity (float64), position != 0 (bool)


def merged(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """The points in order with each run of equal consecutive stamps made one (the last
    equity, open when any of them is), across chunk boundaries too."""
    held: Chunk | None = None
    for ts, equity, opened in chunks:
        if held is not None:
            ts, equity, opened = (np.concatenate((h, c))
                                  for h, c in zip(held, (ts, equity, opened), strict=True))
        if not len(ts):
            continue
        last = np.append(ts[1:] != ts[:-1], True)
        if not last.all():
            starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
            opened = np.logical_or.reduceat(opened, starts)
            ts, equity = ts[last], equity[last]
        held = (ts[-1:], equity[-1:], opened[-1:])
        if len(ts) > 1:
            yield ts[:-1], equity[:-1], opened[:-1]
    if held is not None:
        yield held


class Drawdown:
    """:func:`engine.analysis.metrics.drawdown` of a curve given a chunk at a time."""

    def __init__(self) -> None:
        self.peak: np.float64 | None = None
        self.min_ratio: np.float64 | None = None
        self.peak_ts = 0  # when the last point at or above its peak was
        self.prev_below, self.prev_peak_ts = False, 0
        self.any_below = False
        self.recovered = 0
        self.under: int | None = None

    def add(self, equity: np.ndarray, ts: np.ndarray) -> None:
        peaks = np.maximum.accumulate(equity)
        if self.peak is not None:
            np.maximum(peaks, self.peak, out=peaks)
        self.peak = peaks[-1]
        below = equity < peaks
        low = np.min(np.divide(equity, peaks, out=peaks))
        self.min_ratio = low if self.min_ratio is None else np.minimum(self.min_ratio, low)
        at = np.arange(len(equity))
        at[below] = -1
        np.maximum.accumulate(at, out=at)
        peak_ts = np.where(at >= 0, ts[np.maximum(at, 0)], self.peak_ts)
        prev_below = np.concatenate(([self.prev_below], below[:-1]))
        prev_peak_ts = np.concatenate(([self.prev_peak_ts], peak_ts[:-1]))
        back = prev_below & ~below
        if back.any():
            self.recovered = max(self.recovered, int((ts[back] - prev_peak_ts[back]).max()))
        if below.any():
            self.any_below = True
            longest = int((ts[below] - peak_ts[below]).max())
            self.under = longest if self.under is None else max(self.under, longest)
        self.peak_ts = int(peak_ts[-1])
        self.prev_below, self.prev_peak_ts = bool(below[-1]), int(peak_ts[-1])

    def result(self) -> tuple[float, float]:
        if self.min_ratio is None:
            return 0.0, 0.0
        depth = 1.0 - float(self.min_ratio)
        if not self.any_below:
            return max(depth, 0.0), 0.0
        return max(depth, 0.0), max(self.under, self.recovered) / NS_PER_S


def _with_start(points: Iterable[Chunk], initial_cash: float,
                start_ns: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The curve: the start (initial cash at the data start), then the points."""
    yield np.array([start_ns], np.int64), np.array([initial_cash], np.float64)
    for ts, equity, _ in points:
        yield ts, equity


def _returns(curve: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each chunk of the curve and the simple returns into its points."""
    prev = None
    for _, equity in curve:
        before = equity[:-1] if prev is None else np.concatenate((prev, equity[:-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = equity[1:] / before if prev is None else equity / before
            returns -= 1.0
        prev = equity[-1:]
        yield equity, returns


def fold_curve(passes: Callable[[], Iterable[Chunk]], *, initial_cash: float,
               start_ns: int) -> dict[str, Any]:
    """Counts, drawdown, the daily curve and the pairwise sums of a curve whose chunks
    ``passes()`` gives afresh each time it is called (in time order)."""
    n = opened = 0
    first_ts = last_ts = None
    final = np.float64(initial_cash)
    dd = Drawdown()
    dd.add(np.array([initial_cash], np.float64), np.array([start_ns], np.int64))
    daily: list[float] = [np.float64(initial_cash)]
    day, day_last = None, None
    for ts, equity, opens in merged(passes()):
        n += len(ts)
        opened += int(np.count_nonzero(opens))
        first_ts = int(ts[0]) if first_ts is None else first_ts
        last_ts, final = int(ts[-1]), equity[-1]
        dd.add(equity, ts)
        days = (ts - 1) // DAY_NS
        change = np.flatnonzero(np.diff(days)) if len(days) > 1 else np.empty(0, np.intp)
        if day is not None and days[0] != day:
            daily.append(day_last)
        daily.extend(equity[change])
        day, day_last = days[-1], equity[-1]
    if day is not None:
        daily.append(day_last)
    total, rets, losses = PairwiseSum(n + 1), PairwiseSum(n), PairwiseSum(n)
    for equity, returns in _returns(_with_start(merged(passes()), initial_cash, start_ns)):
        total.add(equity)
        rets.add(returns)
        losses.add(np.square(np.minimum(returns, 0.0)))
    out = {"n": n, "opened": opened, "first_ts": first_ts, "last_ts": last_ts, "final": float(final),
           "drawdown": dd.result(), "daily": np.array(daily, np.float64),
           "mean_equity": float(total.total() / (n + 1)), "returns": rets.total(), "losses": losses.total()}
    out["std"] = _std(passes, out, initial_cash, start_ns) if n >= 2 else math.nan
    return out


def _std(passes: Callable[[], Iterable[Chunk]], folded: dict[str, Any], initial_cash: float,
         start_ns: int) -> float:
    """``returns.std(ddof=1)``: numpy's two passes, the mean and then the squared deviations."""
    n = folded["n"]
    mean = folded["returns"] / n
    squares = PairwiseSum(n)
    for _, returns in _returns(_with_start(merged(passes()), initial_cash, start_ns)):
        deviations = returns - mean
        squares.add(np.multiply(deviations, deviations, out=deviations))
    return float(np.sqrt(squares.total() / (n - 1)))
