"""How historical trade times map onto the served (present-day) clock.

A trade that happened at ``T_hist`` is served at

    T_served = wall_start_ms + floor((T_hist - hist_start) / speed)      (integer ms)

so a live client's wall clock agrees with the ``T`` it receives, and ``speed`` hours of
history pass per wall hour. Giving a restarted server the same ``hist_start`` and
``wall_start_ms`` keeps the mapping continuous across restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.core.clock import NS_PER_MS

Now = Callable[[], int]


def wall_ms() -> int:
    """Wall-clock time in integer ms (the server's default clock)."""
    return time.time_ns() // NS_PER_MS


@dataclass(frozen=True)
class TimeMap:
    """The affine map between history (ns) and the served clock (ms)."""

    hist_start_ns: int
    wall_start_ms: int
    speed: float

    def served_ms(self, ts_ns: np.ndarray) -> np.ndarray:
        """Served times (int64 ms) of historical times (int64 ns)."""
        elapsed = (np.asarray(ts_ns, dtype=np.int64) - self.hist_start_ns).astype(np.float64)
        return self.wall_start_ms + np.floor(elapsed / (self.speed * NS_PER_MS)).astype(np.int64)

    def hist_ns(self, served_ms: int) -> int:
        """The historical time (ns) being served at served time ``served_ms``."""
        return self.hist_start_ns + int((served_ms - self.wall_start_ms) * self.speed * NS_PER_MS)
