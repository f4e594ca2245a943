"""``model``: trade the forecasts of an attention model (full, linformer, reformer or nystrom).

Train a checkpoint with ``papertape train``, then hand it to the strategy::

    papertape train --data 'engine/data/sample/*.csv.gz' --interval 1m --model linformer --out model.pt
    papertape backtest --strategy model --param checkpoint=model.pt

At every bar close the model reads its window of causal features (the last ``seq_len``
bars) and forecasts. The forecast becomes a view in [-1, 1], the view a target position,
and the strategy trades toward it at market:

==============  ===================================  =========================================
head            forecast                             view
==============  ===================================  =========================================
regression      log return over the model's horizon  +1 above ``threshold``, -1 below -threshold
classification  probabilities of down, flat, up      the likeliest class as -1 / 0 / +1, when
                                                     its probability is at least ``threshold``
allocation      a position a in [-1, 1]              a itself (0 while abs(a) <= ``threshold``)
==============  ===================================  =========================================

Parameters (``--param name=value``; all but ``checkpoint`` have defaults that trade):

====================  =========  ==========================================================
checkpoint            required   model file; several, comma-separated, take turns (below)
threshold             0          smallest forecast that counts (units of the table above)
allow_short           true       take short positions (never on spot)
sizing                fixed      ``fixed``: ``notional`` per unit of view; ``volatility``:
                                 equity x ``vol_target`` / realised annual volatility;
                                 ``allocation``: view x equity x ``max_leverage``
notional              1000       position value (quote currency) of ``fixed`` sizing
vol_target            0.25       annualised volatility of ``volatility`` sizing
vol_window            48         bars of realised volatility
max_leverage          1          cap on position value / equity (the account's leverage,
                                 ``--set account.leverage=X``, caps it in turn)
max_position          none       cap on the position in base units
rebalance             0.2        resize a same-direction position only by more than this share
stop_loss             0          exit once a bar closes this fraction below (long) or above
                                 (short) the entry; 0 is off
take_profit           0          exit once a bar closes this fraction in favour; 0 is off
history               rest       live warm-up: ``rest`` (klines before the start), ``none``
                                 (wait for live bars), or bar files / globs, comma-separated
in_sample             false      also trade bars the model was trained or validated on
inference_latency_ms  0          backtest: act on each forecast this much later
measure_latency       false      backtest: use the measured time of one forward pass instead
batch_replay          true       backtest: forecasts computed ahead (false: per bar, as live)
====================  =========  ==========================================================

After a stop-loss or take-profit exit the strategy does not re-enter the same side until
the view leaves it. Sizes are rounded down to the contract's lot; one below the minimum
order is no position.

Timing. Live, the model runs in a worker thread while the feed goes on; its forecast comes
back as a ``Prediction`` stamped when inference finished, and only then is it traded. One
that arrives after the next bar has closed is dropped and counted, and bars that close
while the model is busy get no forecast (the model never falls behind). Before the first
live bar the window is filled from ``history``, so trading starts at once. In a backtest
the forecasts of all bars are computed ahead, each window from its own bar's past only,
and released one per bar close: to the bit the values, and so the orders, that per-bar
inference gives (:mod:`models.runner` explains why). The ledger keeps every forecast with
its latency.

Honest backtests. A model trades only bars after the data it was trained and validated on
(the checkpoint's training window), so a backtest over its training period stays flat
there. Several checkpoints (the folds of ``papertape train --walk-forward``) hand over one
to the next, each from the end of its own training data; ``papertape backtest --strategy
model --walk-forward N`` trains the folds and backtests them in one command.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.analysis.metrics import SECONDS_PER_YEAR
from engine.analysis.report import format_time
from engine.bars.aggregator import parse_interval
from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.events import Bar, Fill, History, Prediction
from engine.core.typed import ConfigError
from engine.feeds.history.sources import DataError, expand
from models.checkpoint import CheckpointError
from models.predictor import Predictor
from models.runner import ModelRunner
from strategies.base import Strategy, StrategyConfig
from strategies.model_history import WarmUp
from strategies.model_sizing import annual_volatility, signal, target_notional, to_lots

EARLIEST = np.iinfo(np.int64).min  # "from the first bar"


@dataclass(frozen=True)
class ModelConfig(StrategyConfig):
    """The parameters of the module docstring's table."""

    checkpoint: str = ""
    threshold: float = 0.0
    allow_short: bool = True
    sizing: Literal["fixed", "volatility", "allocation"] = "fixed"
    notional: float = 1000.0
    vol_target: float = 0.25
    vol_window: int = 48
    max_leverage: float = 1.0
    max_position: float | None = None
    rebalance: float = 0.2
    stop_loss: float = 0.0
    take_profit: float = 0.0
    history: str = "rest"
    in_sample: bool = False
    inference_latency_ms: float = 0.0
    measure_latency: bool = False
    batch_replay: bool = True

    def validate(self) -> None:
        if not self.checkpoint:
            raise ValueError("checkpoint is required: --param checkpoint=PATH "
                             "(make one with papertape train)")
        for name in ("notional", "vol_target", "max_leverage"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("threshold", "rebalance", "stop_loss", "take_profit", "inference_latency_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.vol_window < 2:
            raise ValueError(f"vol_window must be at least 2 bars, got {self.vol_window}")
        if self.max_position is not None and not self.max_position > 0:
            raise ValueError(f"max_position must be positive, got {self.max_position}")


def load_runners(spec: str, in_sample: bool) -> tuple[list[ModelRunner], np.ndarray]:
    """The checkpoints of ``spec`` (comma-separated) in hand-over order, and the open time
    (ms) from which each trades: its out-of-sample start (the first from the beginning with
    ``in_sample``)."""
    paths = [path.strip() for path in spec.split(",") if path.strip()]
    if not paths:
        raise ConfigError(f"strategy model: checkpoint {spec!r} names no file")
    try:
        runners = [ModelRunner.load(path) for path in paths]
    except CheckpointError as exc:
        raise ConfigError(f"strategy model: {exc}") from None
    starts = [EARLIEST if r.trade_from_ms is None else r.trade_from_ms for r in runners]
    order = np.argsort(starts, kind="stable")
    runners, starts = [runners[i] for i in order], np.array(starts, dtype=np.int64)[order]
    for i in range(1, len(runners)):
        if starts[i] == starts[i - 1]:
            when = "the first bar" if starts[i] == EARLIEST else _utc(starts[i])
            raise ConfigError(f"strategy model: {runners[i - 1].path} and {runners[i].path} both trade "
                              f"from {when}, so one would never trade: checkpoints take turns, each "
                              "from the end of its training data (the folds of a walk-forward)")
    first = runners[0]
    for other in runners[1:]:
        if (other.head, other.out_dim, other.interval_ms) != (first.head, first.out_dim, first.interval_ms):
            raise ConfigError(f"strategy model: {other.path} and {first.path} differ in head, "
                              "outputs or bar interval")
    if in_sample:
        starts[0] = EARLIEST
    return runners, starts


class ModelStrategy(Strategy):
    """Trades an attention model's forecasts; see the module docstring."""

    config_class = ModelConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.history not in ("rest", "none"):
            try:
                expand([p for p in cfg.history.split(",") if p.strip()])
            except DataError as exc:
                raise ConfigError(f"strategy model: history: {exc}") from None
        self.runners, self._starts = load_runners(cfg.checkpoint, cfg.in_sample)
        self.head = self.runners[0].head
        if self.head != "regression" and cfg.threshold >= 1:
            raise ConfigError(f"strategy model: threshold {cfg.threshold:g} is never reached by a "
                              f"{self.head} forecast, which is at most 1 (the table in strategies/model.py)")
        if not cfg.batch_replay:
            self.predict_batch = None  # the engine then calls run_inference bar by bar
        self.inference_latency_ns = round(cfg.inference_latency_ms * NS_PER_MS)
        self._streams: list[Predictor] | None = None  # live and per-bar replay only
        self._closes: deque[float] = deque(maxlen=cfg.vol_window + 1)
        self._price = math.nan
        self._entry = 0.0
        self._blocked = 0.0
        self._busy = False
        self._batched = False
        self._max_leverage = cfg.max_leverage
        self.skipped = 0
        self._warmup: WarmUp | None = None  # live, until the window has its history

    @property
    def history_bars(self) -> int:
        """Bars of history (from before the first live bar) in the window."""
        return self._warmup.bars if self._warmup is not None else 0

    # -- set-up -----------------------------------------------------------------------

    @property
    def warmup_bars(self) -> int:
        """Bars every checkpoint's window needs before its first forecast."""
        return max(r.warmup_bars for r in self.runners)

    def check_run(self) -> None:
        spec = parse_interval(self.interval)
        if not spec.is_time or spec.size != self.runners[0].interval_ms * NS_PER_MS:
            raise ConfigError(f"strategy model: the checkpoint was trained on "
                              f"{self.runners[0].meta['interval']} bars, the run has {self.interval} bars")
        if self.instrument.category == "inverse":
            raise ConfigError("strategy model trades linear or spot contracts, not inverse")

    def _active(self, open_ms: np.ndarray) -> np.ndarray:
        """Index of the checkpoint that trades each bar (by open time in ms), -1 for none."""
        return np.searchsorted(self._starts, open_ms, side="right") - 1

    def predict_batch(self, bars: pd.DataFrame,
                      progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Forecasts of every bar of a backtest, computed ahead (NaN where none is made);
        ``progress`` is told how many bars are done as they are."""
        active = self._active(bars["open_time"].to_numpy(np.int64))
        if progress is not None:
            progress(int(np.count_nonzero(active < 0)))  # bars no checkpoint trades
        out = np.full((len(bars), self.runners[0].out_dim), np.nan)
        durations: list[float] | None = [] if self.config.measure_latency else None
        for k, runner in enumerate(self.runners):
            rows = active == k
            if rows.any():
                out[rows] = runner.predict_rows(bars, rows, durations, progress)[rows]
        self._warn_of_late_forecasts(bars["open_time"].to_numpy(np.int64), active, out)
        if durations:
            self.inference_latency_ns = round(statistics.median(durations) * NS_PER_S)
            self.log.info("charging %.1f ms of inference per forecast", self.inference_latency_ns / NS_PER_MS)
        self._batched = True
        return out

    def _warn_of_late_forecasts(self, open_ms: np.ndarray, active: np.ndarray, out: np.ndarray) -> None:
        """Say so when the run makes no forecast, or makes its first later than the first bar
        a checkpoint may trade because the window is still filling (a ``--start`` after the
        data's beginning, for example)."""
        if not len(open_ms):
            return
        tradable = np.flatnonzero(active >= 0)
        made = np.flatnonzero(~np.isnan(out).all(axis=1))
        warmup = self.warmup_bars
        if not len(tradable):
            self.log.warning("no bar of this run comes after the data the checkpoint was trained and "
                             "validated on (it trades from %s): no forecast, no trade; in_sample=true "
                             "trades them anyway", _utc(self._starts[0]))
        elif not len(made):
            self.log.warning("the model needs %d bars before its first forecast, and the run has %d "
                             "from %s: no forecast, no trade", warmup, len(open_ms) - tradable[0],
                             _utc(open_ms[tradable[0]]))
        elif made[0] > tradable[0]:  # a warning when the model's data shows there are earlier bars
            seen = self._starts[active[tradable[0]]] != EARLIEST
            self.log.log(logging.WARNING if seen else logging.INFO,
                         "forecasts start at %s: the first %d bars the model may trade (from %s) fill its "
                         "window of %d bars first; start the run earlier to trade them",
                         _utc(open_ms[made[0]]), made[0] - tradable[0], _utc(open_ms[tradable[0]]), warmup)

    def on_start(self) -> None:
        if self.config.max_leverage > self.leverage:
            self._max_leverage = self.leverage
            remedy = ("spot trades without leverage" if self.instrument.category == "spot" else
                      f"raise it with --set account.leverage={self.config.max_leverage:g}")
            self.log.warning("max_leverage %g is above the account's leverage %g, which caps positions "
                             "at %gx: the broker would refuse larger ones for margin (%s)",
                             self.config.max_leverage, self.leverage, self.leverage, remedy)
        if self._batched:
            return
        self._streams = [runner.stream() for runner in self.runners]
        if self.mode == "live" and self.config.history != "none":
            self._warmup = WarmUp(self, self.runners[0].interval_ms)
            self._warmup.start(self.clock.timestamp_ns() // NS_PER_MS)

    def add_bars(self, rows: list[dict[str, Any]]) -> list[np.ndarray | None]:
        """Add bars (kline rows, oldest first) to the closes and to every model's window; the
        windows after the last row (None until full)."""
        windows: list[np.ndarray | None] = [None] * len(self._streams)
        for row in rows:
            self._closes.append(row["close"])
            windows = [stream.push(row) for stream in self._streams]
        return windows

    def on_history(self, history: History) -> None:
        if self._warmup is None:
            return
        held = self._warmup.arrived(history)
        if held:
            self._forecast(held[-1], self.add_bars(held))

    # -- bars and forecasts ------------------------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        self._price = bar.close
        row = {"open_time": bar.open_time // NS_PER_MS, "open": bar.open, "high": bar.high,
               "low": bar.low, "close": bar.close, "volume": bar.volume, "turnover": bar.turnover,
               "trades": bar.trades}
        if self._warmup is not None and self._warmup.holds(row):
            self._check_exits(bar.close)
            return  # the window waits for its history; the bar joins it when that arrives
        if self._streams is None:  # forecasts computed ahead arrive on their own
            self._closes.append(bar.close)
            self._check_exits(bar.close)
            return
        windows = self.add_bars([row])
        self._check_exits(bar.close)
        self._forecast(row, windows)

    def _forecast(self, row: dict[str, Any], windows: list[np.ndarray | None]) -> None:
        """Start the forecast of the bar ``row`` from the active model's window."""
        k = int(self._active(np.array([row["open_time"]]))[0])
        if k < 0 or windows[k] is None:
            return
        if self._busy:
            self.skipped += 1
            return
        self._busy = True
        close_ns = (row["open_time"] + self.runners[k].interval_ms) * NS_PER_MS
        self.run_inference(partial(self._infer, self.runners[k], windows[k]), close_ns)

    def _infer(self, runner: ModelRunner, window: np.ndarray) -> np.ndarray:
        """The forward pass (a worker thread live); frees the model for the next bar."""
        try:
            return runner.forward(window)
        finally:
            self._busy = False

    def on_prediction(self, prediction: Prediction) -> None:
        cfg = self.config
        view = signal(self.head, prediction.values, cfg.threshold)
        if not cfg.allow_short or self.instrument.category == "spot":
            view = max(view, 0.0)
        if self._blocked:
            if view * self._blocked > 0:
                view = 0.0
            else:
                self._blocked = 0.0
        volatility = None
        if cfg.sizing == "volatility":
            volatility = annual_volatility(self._closes, SECONDS_PER_YEAR * NS_PER_S
                                           / parse_interval(self.interval).size)
        value = target_notional(cfg.sizing, view, self.equity, notional=cfg.notional,
                                vol_target=cfg.vol_target, volatility=volatility,
                                max_leverage=self._max_leverage)
        self._trade_to(to_lots(value, self._price, self.instrument, cfg.max_position))

    def _trade_to(self, qty: float) -> None:
        """Trade toward ``qty`` unless it only resizes the position by ``rebalance`` or less."""
        current = self.position
        if qty * current > 0 and abs(qty - current) <= self.config.rebalance * abs(current):
            return
        self.target_position(qty)

    # -- exits and bookkeeping ---------------------------------------------------------

    def _check_exits(self, close: float) -> None:
        """Close the position when the bar closed past the stop-loss or take-profit level."""
        cfg, pos = self.config, self.position
        if pos == 0 or not self._entry or not (cfg.stop_loss or cfg.take_profit):
            return
        move = (close / self._entry - 1.0) * math.copysign(1.0, pos)
        if (cfg.stop_loss and move <= -cfg.stop_loss) or (cfg.take_profit and move >= cfg.take_profit):
            self._blocked = math.copysign(1.0, pos)
            self.target_position(0.0)

    def on_fill(self, fill: Fill) -> None:
        """Keep the average entry price of the open position."""
        after = self.position
        before = after - fill.side * fill.qty
        if abs(after) < 1e-12:
            self._entry = 0.0
        elif abs(before) < 1e-12 or (before > 0) != (after > 0):
            self._entry = fill.price
        elif abs(after) > abs(before):
            self._entry = (self._entry * abs(before) + fill.price * fill.qty) / abs(after)

    def on_save(self) -> dict[str, Any]:
        return {"entry": self._entry, "blocked": self._blocked, "skipped": self.skipped,
                "history_bars": self.history_bars}

    def on_load(self, state: dict[str, Any]) -> None:
        self._entry = state.get("entry", 0.0)
        self._blocked = state.get("blocked", 0.0)


def _utc(open_ms: int) -> str:
    return f"{format_time(int(open_ms) * NS_PER_MS)} UTC"
