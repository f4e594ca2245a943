"""``rotation``: every ``rebalance`` bars, hold the ``top`` symbols by trailing return.

A cross-sectional portfolio strategy: at every ``rebalance``-th close time (counted in
``on_bars``, once every symbol's bar of that time is in) it ranks the run's symbols by
their return over the last ``lookback`` bars and holds the best ``top`` long, each with
``notional`` quote currency at that close (rounded down to the lot step); with
``side = "long_short"`` it also holds the worst ``top`` short. Everything else goes flat.
A symbol ranks only once it has ``lookback`` bars of history.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.core.typed import ConfigError
from strategies.base import Strategy, StrategyConfig
from strategies.model_sizing import to_lots


@dataclass(frozen=True)
class RotationConfig(StrategyConfig):
    """``lookback`` and ``rebalance`` are bar counts; ``top`` how many symbols to hold on each
    side; ``notional`` each holding's size in quote currency."""

    lookback: int = 60
    rebalance: int = 60
    top: int = 1
    notional: float = 1000.0
    side: Literal["long", "long_short"] = "long"

    def validate(self) -> None:
        for name in ("lookback", "rebalance", "top"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lookback >= sys.maxsize:  # it keeps lookback + 1 closes a symbol: a deque's maxlen
            raise ValueError(f"lookback must be below {sys.maxsize:,}, got {self.lookback:,}")
        if not (math.isfinite(self.notional) and self.notional > 0):
            raise ValueError(f"notional must be positive, got {self.notional}")
        if self.side not in ("long", "long_short"):
            raise ValueError(f"side must be 'long' or 'long_short', got {self.side!r}")


class Rotation(Strategy):
    """Momentum rotation across the run's symbols."""

    config_class = RotationConfig
    config: RotationConfig

    def __init__(self, config: RotationConfig | None = None) -> None:
        super().__init__(config)
        self._closes: dict[str, deque[float]] = {}
        self._sets = 0

    def check_run(self) -> None:
        held = self.config.top * (2 if self.config.side == "long_short" else 1)
        if held > len(self.symbols):
            raise ConfigError(f"rotation: top={self.config.top} ({self.config.side}) holds {held} "
                              f"symbols but the run trades {len(self.symbols)}")

    def on_bars(self, bars: Mapping[str, Any]) -> None:
        for symbol, bar in bars.items():
            self._closes.setdefault(symbol, deque(maxlen=self.config.lookback + 1)).append(bar.close)
        self._sets += 1
        if self._sets % self.config.rebalance == 0:
            self._rebalance()

    def _rebalance(self) -> None:
        """Target the leaders (and laggards) by trailing return; flat for the rest."""
        full = self.config.lookback + 1
        returns = {s: c[-1] / c[0] - 1.0 for s, c in self._closes.items() if len(c) == full}
        if len(returns) < self.config.top * (2 if self.config.side == "long_short" else 1):
            return
        ranked = sorted(returns, key=lambda s: (-returns[s], s))
        targets = dict.fromkeys(self.symbols, 0.0)
        for symbol in ranked[:self.config.top]:
            targets[symbol] = self._size(symbol)
        if self.config.side == "long_short":
            for symbol in ranked[-self.config.top:]:
                targets[symbol] = -self._size(symbol)
        for symbol, qty in targets.items():
            self.target_position(qty, symbol=symbol)

    def _size(self, symbol: str) -> float:
        """``notional`` at the symbol's last close in lots (0 below the instrument's minimums)."""
        return to_lots(self.config.notional, self._closes[symbol][-1], self.instrument_of(symbol), None)

    def on_stop(self) -> None:
        """Say why a run never rebalanced: fewer close times than ``rebalance``, or than the
        ``lookback`` bars a symbol needs before it ranks (the run then trades nothing)."""
        full = self.config.lookback + 1
        if self._sets and self._sets < self.config.rebalance:
            self.log.warning("rotation: rebalance=%d but the run had %d close time(s), so it never "
                             "rebalanced", self.config.rebalance, self._sets)
        elif self._sets and not any(len(c) == full for c in self._closes.values()):
            self.log.warning("rotation: lookback=%d needs %d bars of a symbol before it ranks; the run "
                             "had %d close time(s), so it never traded", self.config.lookback, full,
                             self._sets)

    def on_save(self) -> dict[str, Any]:
        return {"sets": self._sets, "closes": {s: list(c) for s, c in self._closes.items()}}

    def on_load(self, state: dict[str, Any]) -> None:
        self._sets = int(state.get("sets", 0))
        for symbol, closes in state.get("closes", {}).items():
            self._closes[symbol] = deque(closes, maxlen=self.config.lookback + 1)
