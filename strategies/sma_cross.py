"""``sma_cross``: long a fixed quantity while the fast SMA of closes is above the slow one.

Goes long ``qty`` (or ``notional`` worth, in quote currency, at the crossing bar's close,
rounded down to the lot step) when the fast simple moving average crosses above the slow
one and flat when it crosses below; it never shorts. In a portfolio run each symbol is
traded on its own bars, independently of the others. It plots both averages (``sma_fast``,
``sma_slow``) on each symbol's chart once ``slow`` closes are in (``plot=false`` turns that
off). The comparison is the one exact window sums (``math.fsum``) give, so results do not
drift over long runs and match other engines' SMAs; ``FastAboveSlow`` gets it from running
sums, summing exactly only near a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strategies.base import Strategy, StrategyConfig
from strategies.indicators import FastAboveSlow
from strategies.model_sizing import to_lots


@dataclass(frozen=True)
class SmaCrossConfig(StrategyConfig):
    """``fast`` and ``slow`` are bar counts; ``qty`` is the long size in base units, or
    ``notional`` (when given) the long size in quote currency, the same for every symbol;
    ``plot`` records the two averages at every bar."""

    fast: int = 10
    slow: int = 30
    qty: float = 0.01
    notional: float | None = None
    plot: bool = True

    def validate(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={self.fast} slow={self.slow}")
        if not self.qty > 0:
            raise ValueError(f"qty must be positive, got {self.qty}")
        if self.notional is not None and not self.notional > 0:
            raise ValueError(f"notional must be positive, got {self.notional}")


class SmaCross(Strategy):
    """Fast/slow simple-moving-average crossover, long or flat."""

    config_class = SmaCrossConfig

    def __init__(self, config: SmaCrossConfig | None = None) -> None:
        super().__init__(config)
        self._averages: dict[str, FastAboveSlow] = {}
        self._was_above: dict[str, bool | None] = {}

    def on_start(self) -> None:
        for symbol in self.symbols:
            self._averages.setdefault(symbol, FastAboveSlow(self.config.fast, self.config.slow))
            self._was_above.setdefault(symbol, None)

    def on_bar(self, bar) -> None:
        symbol = bar.symbol
        averages = self._averages[symbol]
        above = averages.push(bar.close)
        if above is None:  # fewer than `slow` closes so far
            return
        if self.config.plot:
            fast, slow = averages.means()
            self.plot("sma_fast", fast, symbol)
            self.plot("sma_slow", slow, symbol)
        was_above = self._was_above[symbol]
        self._was_above[symbol] = above
        if was_above is None or above == was_above:
            return
        self.target_position(self._size(symbol, bar.close) if above else 0.0, symbol=symbol)

    def _size(self, symbol: str, price: float) -> float:
        """``qty``, or ``notional`` at ``price`` in lots (none below the symbol's minimums)."""
        if self.config.notional is None:
            return self.config.qty
        return to_lots(self.config.notional, price, self.instrument_of(symbol), None)

    def on_save(self) -> dict[str, Any]:
        if len(self.symbols) == 1:  # the one-symbol layout resumed runs already hold
            symbol = self.symbols[0]
            return {"closes": list(self._averages[symbol].window), "was_above": self._was_above[symbol]}
        return {"symbols": {s: {"closes": list(self._averages[s].window), "was_above": self._was_above[s]}
                            for s in self.symbols}}

    def on_load(self, state: dict[str, Any]) -> None:
        per_symbol = state.get("symbols", {self.symbols[0]: state} if len(self.symbols) == 1 else {})
        for symbol, saved in per_symbol.items():
            averages = self._averages.setdefault(symbol, FastAboveSlow(self.config.fast, self.config.slow))
            averages.extend(saved.get("closes", []))
            self._was_above[symbol] = saved.get("was_above")
