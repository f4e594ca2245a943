"""What a batch of trades adds to a bar, exactly: volume and turnover as integers in fixed
units (so any batching of the same trades sums to the same bits), a bar's running summary,
and per-bar summaries of a batch that spans several bars."""

from __future__ import annotations

import numpy as np

from engine.core.events import Trades

VOLUME_SCALE = 10**8
TURNOVER_SCALE = 10**6
INVERSE_TURNOVER_SCALE = 10**10


class Partial:
    """The running summary of one unfinished bar, in exact integer volume/turnover."""

    __slots__ = ("open", "high", "low", "close", "volume", "turnover", "trades", "first", "last")

    def __init__(self, o, h, lo, c, vol, turn, n, first, last) -> None:
        self.open, self.high, self.low, self.close = o, h, lo, c
        self.volume, self.turnover, self.trades = vol, turn, n
        self.first, self.last = first, last

    def merge(self, o, h, lo, c, vol, turn, n, first, last) -> None:
        if first < self.first:
            self.open, self.first = o, first
        if last >= self.last:
            self.close, self.last = c, last
        if h > self.high:
            self.high = h
        if lo < self.low:
            self.low = lo
        self.volume += vol
        self.turnover += turn
        self.trades += n


_max, _min, _add = np.maximum.reduce, np.minimum.reduce, np.add.reduce


def slice_stats(price, ts, vol, turn, lo: int, hi: int) -> tuple:
    """Open/high/low/close/volume/turnover/count/first/last of trades ``lo:hi`` of a batch, all
    of one bar (ufunc reductions: numpy's wrappers cost more than a bar's worth of trades)."""
    part = price[lo:hi]
    return (float(part[0]), float(_max(part)), float(_min(part)), float(part[-1]), int(_add(vol[lo:hi])),
            int(_add(turn[lo:hi])), hi - lo, int(ts[lo]), int(ts[hi - 1]))


def scaled(trades: Trades, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-trade volume and turnover as exact integers in the module's fixed units."""
    return scaled_columns(trades.price, trades.size, inverse)


def scaled_columns(price: np.ndarray, size: np.ndarray, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scaled` of price and size columns (each trade's values alone: any slicing agrees)."""
    vol = np.rint(size * VOLUME_SCALE).astype(np.int64)
    if inverse:
        turn = np.rint(size / price * INVERSE_TURNOVER_SCALE).astype(np.int64)
    else:
        turn = np.rint(price * size * TURNOVER_SCALE).astype(np.int64)
    return vol, turn


def group_stats(price, ts, vol, turn, starts):
    """Per-group open/high/low/close/volume/turnover/count/first/last for contiguous groups
    beginning at ``starts`` (a sorted int array starting with 0)."""
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = len(price)
    return (
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[ends - 1],
        np.add.reduceat(vol, starts),
        np.add.reduceat(turn, starts),
        ends - starts,
        ts[starts],
        ts[ends - 1],
    )
