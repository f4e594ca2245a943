"""``sma_cross``: long a fixed quantity while the fast SMA of closes is above the slow one.

Goes long ``qty`` when the fast simple moving average crosses above the slow one and flat
when it crosses below; it never shorts. Averages are exact sums over each window
(``math.fsum``), so results do not drift over long runs and match other engines' SMAs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from strategies.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class SmaCrossConfig(StrategyConfig):
    """``fast`` and ``slow`` are bar counts; ``qty`` is the long size in base units."""

    fast: int = 10
    slow: int = 30
    qty: float = 0.01

    def validate(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={self.fast} slow={self.slow}")
        if not self.qty > 0:
            raise ValueError(f"qty must be positive, got {self.qty}")


class SmaCross(Strategy):
    """Fast/slow simple-moving-average crossover, long or flat."""

    config_class = SmaCrossConfig

    def __init__(self, config: SmaCrossConfig | None = None) -> None:
        super().__init__(config)
        self._closes: deque[float] = deque(maxlen=self.config.slow)
        self._recent: deque[float] = deque(maxlen=self.config.fast)
        self._was_above: bool | None = None

    def on_bar(self, bar) -> None:
        closes, recent = self._closes, self._recent
        close = bar.close
        closes.append(close)
        recent.append(close)
        slow_n = self.config.slow
        if len(closes) < slow_n:
            return
        fast = math.fsum(recent) / self.config.fast
        slow = math.fsum(closes) / slow_n
        above = fast > slow
        was_above = self._was_above
        self._was_above = above
        if was_above is None or above == was_above:
            return
        self.target_position(self.config.qty if above else 0.0)

    def on_save(self) -> dict[str, Any]:
        return {"closes": list(self._closes), "was_above": self._was_above}

    def on_load(self, state: dict[str, Any]) -> None:
        self._closes.extend(state.get("closes", []))
        self._recent.extend(state.get("closes", []))
        self._was_above = state.get("was_above")
