"""numpy's float64 sum, to the bit, of values that arrive in pieces: the metrics sum a run's
curve without holding it.

``np.add.reduce`` over a contiguous float64 array of ``n`` values sums pairwise: blocks of at
most 128 values, and above that the two halves of the range, the first half's length rounded
down to a multiple of 8. The tree depends on ``n`` alone, so a range of at most ``leaf``
values is summed by numpy itself (the same tree inside it) and the ranges' sums are added
up the tree as numpy adds its halves.
"""

from __future__ import annotations

import numpy as np

BLOCK = 128  # numpy's PW_BLOCKSIZE: a range this short is not split
LEAF = 1 << 16  # the longest range summed at once


def _leaves(n: int, leaf: int, out: list[int]) -> None:
    """The lengths of the ranges, in order, that the tree of ``n`` values splits into."""
    if n <= max(leaf, BLOCK):
        out.append(n)
        return
    half = n // 2
    half -= half % 8
    _leaves(half, leaf, out)
    _leaves(n - half, leaf, out)


def _combine(n: int, leaf: int, sums: list[float], at: list[int]) -> float:
    if n <= max(leaf, BLOCK):
        at[0] += 1
        return sums[at[0] - 1]
    half = n // 2
    half -= half % 8
    first = _combine(half, leaf, sums, at)
    return first + _combine(n - half, leaf, sums, at)


class PairwiseSum:
    """``np.add.reduce`` of ``n`` float64 values given in order, a piece at a time, holding at
    most ``leaf`` of them: ``add`` each piece, then ``total``."""

    def __init__(self, n: int, leaf: int = LEAF) -> None:
        self.n, self.leaf = n, leaf
        lengths: list[int] = []
        if n:
            _leaves(n, leaf, lengths)
        self.lengths = lengths
        self.sums: list[np.float64] = []
        self.pending: list[np.ndarray] = []
        self.held = 0  # values pending for the current range
        self.seen = 0

    def add(self, values: np.ndarray) -> None:
        """The next values, in order."""
        values = np.asarray(values, dtype=np.float64)
        self.seen += len(values)
        if self.seen > self.n:
            raise ValueError(f"more than the {self.n} values announced")
        while len(values):
            want = self.lengths[len(self.sums)] - self.held
            piece, values = values[:want], values[want:]
            self.pending.append(piece)
            self.held += len(piece)
            if self.held == self.lengths[len(self.sums)]:
                joined = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
                self.sums.append(np.add.reduce(np.ascontiguousarray(joined)))
                self.pending, self.held = [], 0

    def total(self) -> np.float64:
        """The sum, as ``np.add.reduce`` of the ``n`` values in one array gives it."""
        if self.seen != self.n:
            raise ValueError(f"{self.seen} values of the {self.n} announced")
        if not self.n:
            return np.float64(0.0)
        return _combine(self.n, self.leaf, self.sums, [0])
