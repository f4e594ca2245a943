"""Indicators for strategies, exact where a trading decision hangs on them."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from itertools import islice

# Twice the unit roundoff of a double: each rounding bound below holds with room to spare.
ROUNDING = 2.0**-52


class FastAboveSlow:
    """Whether the mean of the last ``fast`` values is above the mean of the last ``slow``,
    decided exactly as comparing ``math.fsum(window) / n`` of the two windows would, at
    O(1) cost per value instead of summing both windows every time.

    Both windows keep running sums. Each update of a sum of ``n`` values, all at most ``L``
    in size, is off by at most half of ``ROUNDING * (n + 3) * L``; after ``k`` updates the
    error is at most ``k`` times that. Only when the two means are closer than those bounds
    (or one is NaN) are the windows summed exactly, and the count restarts there.
    """

    __slots__ = ("fast", "slow", "window", "_fast_sum", "_slow_sum", "_steps", "_largest", "_per_step")

    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        self.fast, self.slow = fast, slow
        self.window: deque[float] = deque(maxlen=slow)
        self._fast_sum = self._slow_sum = 0.0
        self._steps = 0  # updates since the sums were exact
        self._largest = 0.0  # the largest |value| seen since then
        # both means' error bound per update, per unit of the largest value
        self._per_step = ROUNDING * ((fast + 3) / fast + (slow + 3) / slow)

    def extend(self, values: Iterable[float]) -> None:
        """Append ``values`` without deciding anything (restoring saved state)."""
        self.window.extend(values)
        self._sum_exactly()

    def push(self, value: float) -> bool | None:
        """Append ``value``; whether the fast mean is now above the slow one (None until
        ``slow`` values have arrived)."""
        window, fast_n, slow_n = self.window, self.fast, self.slow
        n = len(window)
        fast_sum = self._fast_sum = self._fast_sum + (value - (window[-fast_n] if n >= fast_n else 0.0))
        slow_sum = self._slow_sum = self._slow_sum + (value - (window[0] if n == slow_n else 0.0))
        window.append(value)
        steps = self._steps = self._steps + 1
        size = abs(value)
        if size > self._largest:
            self._largest = size
        if n + 1 < slow_n:
            return None
        fast, slow = fast_sum / fast_n, slow_sum / slow_n
        margin = steps * self._per_step * self._largest + 4 * ROUNDING * (abs(fast) + abs(slow))
        if not abs(fast - slow) > margin:  # too close to call from running sums, or NaN
            self._sum_exactly()
            fast, slow = self._fast_sum / fast_n, self._slow_sum / slow_n
        return fast > slow

    def means(self) -> tuple[float, float]:
        """The fast and the slow mean of the values so far (from the running sums: for
        plotting, within rounding of the exact means)."""
        window = self.window
        return (self._fast_sum / min(len(window), self.fast) if window else math.nan,
                self._slow_sum / len(window) if window else math.nan)

    def _sum_exactly(self) -> None:
        window = self.window
        self._fast_sum = math.fsum(islice(window, max(len(window) - self.fast, 0), None))
        self._slow_sum = math.fsum(window)
        self._steps = 1  # an exact sum is still rounded once
        self._largest = max(map(abs, window), default=0.0)
