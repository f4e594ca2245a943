"""``sma_cross``: long a fixed quantity while the fast SMA of closes is above the slow one.

Goes long ``qty`` when the fast simple moving average crosses above the slow one and flat
when it crosses below; it never shorts. The comparison is the one exact window sums
(``math.fsum``) give, so results do not drift over long runs and match other engines' SMAs;
``FastAboveSlow`` gets it from running sums, summing exactly only near a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strategies.base import Strategy, StrategyConfig
from strategies.indicators import FastAboveSlow


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
        self._averages = FastAboveSlow(self.config.fast, self.config.slow)
        self._was_above: bool | None = None

    def on_bar(self, bar) -> None:
        above = self._averages.push(bar.close)
        if above is None:  # fewer than `slow` closes so far
            return
        was_above = self._was_above
        self._was_above = above
        if was_above is None or above == was_above:
            return
        self.target_position(self.config.qty if above else 0.0)

    def on_save(self) -> dict[str, Any]:
        return {"closes": list(self._averages.window), "was_above": self._was_above}

    def on_load(self, state: dict[str, Any]) -> None:
        self._averages.extend(state.get("closes", []))
        self._was_above = state.get("was_above")
