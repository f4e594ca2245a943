"""One symbol's state in the model strategy: its own window (a streaming predictor per
checkpoint, fed only that symbol's bars), its recent closes, last price, average entry and
exit block, so that no symbol's bars or fills reach another symbol's forecasts or exits."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.predictor import Predictor


@dataclass
class Book:
    """A symbol's window and trading state (``streams`` is None when forecasts are computed
    ahead, in a backtest)."""

    closes: deque
    streams: list[Predictor] | None = None
    price: float = math.nan
    entry: float = 0.0
    blocked: float = 0.0  # the side a stop-loss or take-profit closed, until the view leaves it
    busy: bool = False  # a forecast of this symbol is being computed
    warmup: Any = None  # live: a WarmUp until the window has its history

    def add_bars(self, rows: list[dict[str, Any]]) -> list[np.ndarray | None]:
        """Add bars (kline rows, oldest first) to the closes and every model's window; the
        windows after the last row (None until full)."""
        windows: list[np.ndarray | None] = [None] * len(self.streams)
        for row in rows:
            self.closes.append(row["close"])
            windows = [stream.push(row) for stream in self.streams]
        return windows

    def exit_due(self, close: float, position: float, stop_loss: float, take_profit: float) -> bool:
        """Whether a bar closing at ``close`` passed the stop-loss or take-profit level of the
        open ``position``; if so the side is blocked from re-entry."""
        if position == 0 or not self.entry or not (stop_loss or take_profit):
            return False
        move = (close / self.entry - 1.0) * math.copysign(1.0, position)
        if (stop_loss and move <= -stop_loss) or (take_profit and move >= take_profit):
            self.blocked = math.copysign(1.0, position)
            return True
        return False

    def filled(self, after: float, side: int, qty: float, price: float) -> None:
        """Keep the average entry price of the open position after a fill."""
        before = after - side * qty
        if abs(after) < 1e-12:
            self.entry = 0.0
        elif abs(before) < 1e-12 or (before > 0) != (after > 0):
            self.entry = price
        elif abs(after) > abs(before):
            self.entry = (self.entry * abs(before) + price * qty) / abs(after)
