"""Batch predictions for backtests: a strategy's ``predict_batch`` runs once over every bar
of the run, and each row is delivered as a :class:`~engine.core.events.Prediction` when its bar
closes, exactly as per-bar inference would deliver it, only without the wait.

The strategy never holds outputs for bars that have not closed: this component keeps them
and releases one per bar, after checking that the bar the replay produced is the bar the
batch saw. ``latency_ns`` optionally charges an inference time, so the prediction (and the
orders it leads to) arrive as late as they would live.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, Prediction

log = logging.getLogger(__name__)


class BarMismatch(RuntimeError):
    """The replay produced a bar that differs from the one the batch predictions used."""


class BatchPredictions:
    """Holds precomputed outputs and releases each at its bar's close."""

    def __init__(self, bus: Bus, strategy_id: str, symbol: str, interval: str,
                 bars: pd.DataFrame, outputs: np.ndarray, latency_ns: int = 0) -> None:
        outputs = np.asarray(outputs, dtype=np.float64)
        if outputs.ndim == 1:
            outputs = outputs[:, None]
        if len(outputs) != len(bars):
            raise ValueError(f"predict_batch gave {len(outputs)} rows for {len(bars)} bars")
        self.bus, self.strategy_id, self.symbol, self.interval = bus, strategy_id, symbol, interval
        self.latency_ns = latency_ns
        self._rows = {int(t): i for i, t in enumerate(bars["open_time"].to_numpy(dtype=np.int64))}
        self._closes = bars["close"].to_numpy(dtype=np.float64)
        self._outputs = outputs
        self.delivered = 0
        bus.subscribe(Bar, self._on_bar)

    def _on_bar(self, bar: Bar) -> None:
        if bar.symbol != self.symbol or bar.interval != self.interval:
            return
        row = self._rows.get(bar.open_time // NS_PER_MS)
        if row is None:
            raise BarMismatch(f"no precomputed prediction for the bar opening at {bar.open_time}")
        if self._closes[row] != bar.close:
            raise BarMismatch(f"bar at {bar.open_time}: replay close {bar.close} != batch close "
                              f"{self._closes[row]}")
        values = self._outputs[row]
        if np.isnan(values).any():
            return
        clock = self.bus.clock
        prediction = Prediction(self.strategy_id, self.symbol, tuple(values.tolist()), bar.close_time,
                                clock.timestamp_ns() + self.latency_ns)
        self.delivered += 1
        if self.latency_ns:
            clock.set_timer(prediction.ts_init, lambda _at, p=prediction: self.bus.publish(p),
                            "prediction")
        else:
            self.bus.publish(prediction)
