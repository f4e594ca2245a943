"""A replay chunk's trades grouped by bar once, so that a batch cut from the chunk costs its
bars a few list look-ups instead of a dozen numpy calls on a few dozen trades.

Replays send batches that are slices of one chunk's columns, in order. :class:`ChunkRuns`
finds, a window of rows at a time, each run of rows that fall in one bar and sums it up with
:func:`~engine.bars.bar_sums.group_stats` (the same values as any slices of the run folded
in order: integer sums, first/last by position). A batch is placed in its chunk by its
columns' addresses, so only a batch that is truly the same rows of one chunk's ts, price and
size takes this path; anything else (live messages, small arrays) is summed batch by batch.
A replay cuts its batches with :func:`cut`, which remembers the last one, so that batch is
placed by identity instead (reading three columns' addresses cost ~27k instructions a batch).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from engine.bars.bar_sums import group_stats, scaled_columns, slice_stats
from engine.core.events import Trades

WINDOW_ROWS = 16384  # rows grouped at a time: the run lists stay small however sparse the bars
MIN_ROWS = 4096  # columns shorter than this (a live message) are summed batch by batch


_last_cut: tuple | None = None  # (batch, ts, price, size, first row) of the last cut()


def cut(symbol: str, ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray,
        ids: np.ndarray | None, lo: int, hi: int) -> Trades:
    """Rows ``lo:hi`` (``0 <= lo < hi <= len(ts)``) of a chunk's columns as a batch stamped
    with its last trade's time, remembered for :meth:`ChunkRuns.row_of`."""
    global _last_cut
    trades = Trades(symbol, ts[lo:hi], price[lo:hi], size[lo:hi], side[lo:hi],
                    None if ids is None else ids[lo:hi], ts.item(hi - 1))
    _last_cut = (trades, ts, price, size, lo)
    return trades


def forget_cut() -> None:
    """Drop the batch :func:`cut` remembered (at a replay's end: it holds the chunk's columns)."""
    global _last_cut
    _last_cut = None


def _address(column: np.ndarray) -> int:
    return column.__array_interface__["data"][0]


def _plain(column, dtype) -> bool:
    return (isinstance(column, np.ndarray) and column.ndim == 1 and column.dtype == dtype
            and column.flags.c_contiguous)


class ChunkRuns:
    """The runs of rows of one bar in one chunk (``ts``, ``price``, ``size`` of equal length),
    on the bar grid of ``size_ns`` and ``offset_ns``, grouped a window at a time."""

    __slots__ = ("ts", "price", "size", "inverse", "starts", "keys", "stats",
                 "_at", "_size_ns", "_offset_ns", "_window", "_n")

    def __init__(self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, size_ns: int,
                 offset_ns: int, inverse: bool) -> None:
        self.ts, self.price, self.size, self.inverse = ts, price, size, inverse
        self._at = (_address(ts), _address(price), _address(size))
        self._size_ns, self._offset_ns = size_ns, offset_ns
        self._window, self._n = -1, len(ts)
        self.starts: list[int] = []
        self.keys: list[int] = []
        self.stats: list[tuple] = []

    @classmethod
    def of(cls, trades: Trades, size_ns: int, offset_ns: int, inverse: bool) -> ChunkRuns | None:
        """The runs of the chunk ``trades`` is cut from, or None when its columns are not
        slices of long plain int64/float64 arrays of one length."""
        ts, price, size = trades.ts_event.base, trades.price.base, trades.size.base
        if not (_plain(ts, np.int64) and _plain(price, np.float64) and _plain(size, np.float64)):
            return None
        if len(ts) < MIN_ROWS or len(price) != len(ts) or len(size) != len(ts):
            return None
        return cls(ts, price, size, size_ns, offset_ns, inverse)

    def row_of(self, trades: Trades) -> int | None:
        """The chunk row where ``trades`` starts, or None unless its ts, price and size are
        the same contiguous rows of this chunk's columns."""
        last = _last_cut
        if (last is not None and last[0] is trades and last[1] is self.ts and last[2] is self.price
                and last[3] is self.size):
            return last[4]
        ts, price, size = trades.ts_event, trades.price, trades.size
        if price.base is not self.price or size.base is not self.size:
            return None
        if ts.strides != (8,) or price.strides != (8,) or size.strides != (8,):
            return None
        at_ts, at_price, at_size = self._at
        offset = ts.__array_interface__["data"][0] - at_ts  # inlined _address: this runs every batch
        if (offset != price.__array_interface__["data"][0] - at_price
                or offset != size.__array_interface__["data"][0] - at_size):
            return None
        return offset >> 3

    def run_at(self, row: int) -> int:
        """The index (into ``starts``, ``keys``, ``stats``) of the run holding ``row``."""
        window = row // WINDOW_ROWS
        if window != self._window:
            self._group(window)
        return bisect_right(self.starts, row) - 1

    def _group(self, window: int) -> None:
        lo = window * WINDOW_ROWS
        hi = min(lo + WINDOW_ROWS, self._n)
        ts, price = self.ts[lo:hi], self.price[lo:hi]
        keys = (ts - self._offset_ns) // self._size_ns
        starts = np.concatenate(([0], np.flatnonzero(np.diff(keys)) + 1))
        vol, turn = scaled_columns(price, self.size[lo:hi], self.inverse)
        stats = group_stats(price, ts, vol, turn, starts)
        self.starts = (starts + lo).tolist() + [hi]
        self.keys = keys[starts].tolist()
        self.stats = list(zip(*(column.tolist() for column in stats), strict=True))
        self._window = window

    def range_stats(self, lo: int, hi: int) -> tuple:
        """What rows ``lo:hi`` (all of one bar) add to it, summed from the rows themselves."""
        price = self.price[lo:hi]
        vol, turn = scaled_columns(price, self.size[lo:hi], self.inverse)
        return slice_stats(price, self.ts[lo:hi], vol, turn, 0, hi - lo)
