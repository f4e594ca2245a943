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

    Each window keeps a running sum and a bound on that sum's accumulated rounding error.
    Only when the two means are too close for the bounds to decide (or one is NaN) are the
    windows summed exactly, and the running sums restart from those exact sums.
    """

    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        self.fast, self.slow = fast, slow
        self.window: deque[float] = deque(maxlen=slow)
        self._fast_sum = self._slow_sum = 0.0
        self._fast_error = self._slow_error = 0.0

    def extend(self, values: Iterable[float]) -> None:
        """Append ``values`` without deciding anything (restoring saved state)."""
        self.window.extend(values)
        self._sum_exactly()

    def push(self, value: float) -> bool | None:
        """Append ``value``; whether the fast mean is now above the slow one (None until
        ``slow`` values have arrived)."""
        window, fast_n, slow_n = self.window, self.fast, self.slow
        n = len(window)
        # |running sum - exact sum| grows by at most ROUNDING * (|new sum| + |in| + |out|)
        out = window[-fast_n] if n >= fast_n else 0.0
        fast_sum = self._fast_sum = self._fast_sum + (value - out)
        self._fast_error += ROUNDING * (abs(fast_sum) + abs(value) + abs(out))
        out = window[0] if n == slow_n else 0.0
        slow_sum = self._slow_sum = self._slow_sum + (value - out)
        self._slow_error += ROUNDING * (abs(slow_sum) + abs(value) + abs(out))
        window.append(value)
        if n + 1 < slow_n:
            return None
        fast, slow = fast_sum / fast_n, slow_sum / slow_n
        margin = (self._fast_error / fast_n + self._slow_error / slow_n
                  + 4 * ROUNDING * (abs(fast) + abs(slow)))
        if not abs(fast - slow) > margin:  # too close to call from running sums, or NaN
            self._sum_exactly()
            fast, slow = self._fast_sum / fast_n, self._slow_sum / slow_n
        return fast > slow

    def _sum_exactly(self) -> None:
        window = self.window
        self._fast_sum = math.fsum(islice(window, max(len(window) - self.fast, 0), None))
        self._slow_sum = math.fsum(window)
        self._fast_error = ROUNDING * abs(self._fast_sum)
        self._slow_error = ROUNDING * abs(self._slow_sum)
