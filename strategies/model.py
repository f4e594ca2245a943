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

Portfolios. A run of ``--symbols A,B`` trades every symbol with the one checkpoint (train
it on all of them: ``papertape train --data A=a.csv B=b.csv``; a symbol it was not trained
on is traded with a warning that says so). Each symbol has its own window, fed only its own
bars, its own forecasts (``Prediction.symbol``), exits and orders;
live, the windows of one close time go to the model as one job off the event loop (each its
own forward pass, so the bits equal a replay's), and their forecasts arrive together;
sizes are per symbol (``notional`` each; ``allocation`` and ``volatility`` size each symbol
from the account's equity, so N symbols may take N times the exposure of one).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.analysis.metrics import SECONDS_PER_YEAR
from engine.bars.aggregator import parse_interval
from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.events import Bar, Fill, History, Prediction
from engine.core.typed import ConfigError
from engine.feeds.history.sources import DataError, expand
from models.runner import ModelRunner
from strategies.base import Strategy, StrategyConfig
from strategies.model_books import Book
from strategies.model_checkpoints import load_runners, warn_of_late_forecasts
from strategies.model_history import WarmUp
from strategies.model_sizing import annual_volatility, signal, target_notional, to_lots
from strategies.model_training import ModelTrainer


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


class ModelStrategy(Strategy):
    """Trades an attention model's forecasts; see the module docstring."""

    config_class = ModelConfig
    sweep_trainer = ModelTrainer()  # `papertape sweep` trains each trial's checkpoint with it

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
        self._books: dict[str, Book] = {}  # per symbol: its window, closes, entry and exit block
        self._batch: list[tuple[str, Book, ModelRunner, np.ndarray]] = []  # live portfolio: a close time's
        self._batch_close, self._batch_seen = -1, 0  # that close time, and how many symbols' bars came
        self._batched = False
        self._max_leverage = cfg.max_leverage
        self.skipped = 0

    def _book(self, symbol: str) -> Book:
        """``symbol``'s book, made on first use (a resumed run loads state before the start)."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = Book(deque(maxlen=self.config.vol_window + 1))
        return book

    @property
    def history_bars(self) -> int:
        """Bars of history (from before the first live bar) in the window; the fewest of any
        symbol's in a portfolio."""
        return min((self.history_bars_of(s) for s in self.symbols), default=0)

    def history_bars_of(self, symbol: str) -> int:
        """Bars of history in ``symbol``'s window."""
        warmup = self._book(symbol).warmup
        return warmup.bars if warmup is not None else 0

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
        if any(self.instrument_of(s).category == "inverse" for s in self.symbols):
            raise ConfigError("strategy model trades linear or spot contracts, not inverse")
        trained = sorted({s for runner in self.runners for s in runner.meta.get("symbols", ())})
        unseen = [s for s in self.symbols if trained and s not in trained]
        if unseen:
            self.log.warning("the checkpoint was trained on %s, not on %s: %s forecasts come from what it "
                             "learned of the others", ", ".join(trained), ", ".join(unseen),
                             "its" if len(unseen) == 1 else "their")

    def _active(self, open_ms: np.ndarray) -> np.ndarray:
        """Index of the checkpoint that trades each bar (by open time in ms), -1 for none."""
        return np.searchsorted(self._starts, open_ms, side="right") - 1

    def predict_batch(self, bars: pd.DataFrame, progress: Callable[[int], object] | None = None,
                      symbol: str | None = None) -> np.ndarray:
        """Forecasts of every bar of a backtest (of ``symbol``, in a portfolio), computed
        ahead (NaN where none is made); ``progress`` is told how many bars are done as they are."""
        active = self._active(bars["open_time"].to_numpy(np.int64))
        if progress is not None:
            progress(int(np.count_nonzero(active < 0)))  # bars no checkpoint trades
        out = np.full((len(bars), self.runners[0].out_dim), np.nan)
        durations: list[float] | None = [] if self.config.measure_latency else None
        for k, runner in enumerate(self.runners):
            rows = active == k
            if rows.any():
                out[rows] = runner.predict_rows(bars, rows, durations, progress)[rows]
        who = f"{symbol}: " if symbol is not None and len(self.symbols) > 1 else ""
        warn_of_late_forecasts(self.log, self._starts, self.warmup_bars, bars["open_time"].to_numpy(np.int64),
                               active, out, who)
        if durations:
            self.inference_latency_ns = round(statistics.median(durations) * NS_PER_S)
            self.log.info("charging %.1f ms of inference per forecast", self.inference_latency_ns / NS_PER_MS)
        self._batched = True
        return out

    def on_start(self) -> None:
        if self.config.max_leverage > self.leverage:
            self._max_leverage = self.leverage
            remedy = ("spot trades without leverage" if self.instrument_of(self.symbols[0]).category == "spot"
                      else f"raise it with --set account.leverage={self.config.max_leverage:g}")
            self.log.warning("max_leverage %g is above the account's leverage %g, which caps positions "
                             "at %gx: the broker would refuse larger ones for margin (%s)",
                             self.config.max_leverage, self.leverage, self.leverage, remedy)
        if self._batched:
            return
        for symbol in self.symbols:
            book = self._book(symbol)
            book.streams = [runner.stream() for runner in self.runners]
            if self.mode == "live" and self.config.history != "none":
                book.warmup = WarmUp(self, self.runners[0].interval_ms, symbol)
                book.warmup.start(self.clock.timestamp_ns() // NS_PER_MS)

    def add_bars(self, rows: list[dict[str, Any]], symbol: str | None = None) -> list[np.ndarray | None]:
        """Add bars (kline rows, oldest first) of ``symbol`` (default the run's only one) to
        its closes and to every model's window of it; the windows after the last row (None
        until full)."""
        return self._book(symbol or self.symbol).add_bars(rows)

    def on_history(self, history: History) -> None:
        warmup = self._book(history.symbol).warmup
        if warmup is None:
            return
        held = warmup.arrived(history)
        if held:
            self._forecast(history.symbol, held[-1], self.add_bars(held, history.symbol))

    # -- bars and forecasts ------------------------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        batching = self.mode == "live" and len(self.symbols) > 1
        if batching and bar.close_time != self._batch_close:
            self._send_batch()  # an earlier close time's set that lacked a symbol's bar
            self._batch_close, self._batch_seen = bar.close_time, 0
        self._on_bar(bar, batching)
        if batching:
            self._batch_seen += 1
            if self._batch_seen == len(self.symbols):
                self._send_batch()

    def _on_bar(self, bar: Bar, batching: bool) -> None:
        symbol = bar.symbol
        book = self._book(symbol)
        book.price = bar.close
        row = {"open_time": bar.open_time // NS_PER_MS, "open": bar.open, "high": bar.high,
               "low": bar.low, "close": bar.close, "volume": bar.volume, "turnover": bar.turnover,
               "trades": bar.trades}
        if book.warmup is not None and book.warmup.holds(row):
            self._check_exits(symbol, bar.close)
            return  # the window waits for its history; the bar joins it when that arrives
        if book.streams is None:  # forecasts computed ahead arrive on their own
            book.closes.append(bar.close)
            self._check_exits(symbol, bar.close)
            return
        windows = book.add_bars([row])
        self._check_exits(symbol, bar.close)
        self._forecast(symbol, row, windows, batching)

    def _forecast(self, symbol: str, row: dict[str, Any], windows: list[np.ndarray | None],
                  batching: bool = False) -> None:
        """Start the forecast of ``symbol``'s bar ``row`` from the active model's window (live
        in a portfolio: kept for the close time's batch)."""
        k = int(self._active(np.array([row["open_time"]]))[0])
        if k < 0 or windows[k] is None:
            return
        book = self._book(symbol)
        if book.busy:
            self.skipped += 1
            return
        book.busy = True
        close_ns = (row["open_time"] + self.runners[k].interval_ms) * NS_PER_MS
        if batching:
            self._batch.append((symbol, book, self.runners[k], windows[k]))
            return
        self.run_inference(partial(self._infer, book, self.runners[k], windows[k]), close_ns, symbol)

    def _send_batch(self) -> None:
        """Every symbol's window of the close time, to the model in one job off the event loop;
        each window still has its own forward pass (batch 1), so the bits equal a replay's."""
        batch, self._batch = self._batch, []
        if batch:
            self.run_inference_batch(partial(self._infer_batch, batch), self._batch_close)

    @staticmethod
    def _infer_batch(batch: list[tuple[str, Book, ModelRunner, np.ndarray]]) -> dict[str, np.ndarray]:
        try:
            return {symbol: runner.forward(window) for symbol, _, runner, window in batch}
        finally:
            for _, book, _, _ in batch:
                book.busy = False

    @staticmethod
    def _infer(book: Book, runner: ModelRunner, window: np.ndarray) -> np.ndarray:
        """The forward pass (a worker thread live); frees the symbol's model for its next bar."""
        try:
            return runner.forward(window)
        finally:
            book.busy = False

    def on_prediction(self, prediction: Prediction) -> None:
        cfg, symbol = self.config, prediction.symbol
        book, instrument = self._book(symbol), self.instrument_of(symbol)
        view = signal(self.head, prediction.values, cfg.threshold)
        if not cfg.allow_short or instrument.category == "spot":
            view = max(view, 0.0)
        if book.blocked:
            if view * book.blocked > 0:
                view = 0.0
            else:
                book.blocked = 0.0
        volatility = None
        if cfg.sizing == "volatility":
            volatility = annual_volatility(book.closes, SECONDS_PER_YEAR * NS_PER_S
                                           / parse_interval(self.interval).size)
        value = target_notional(cfg.sizing, view, self.equity, notional=cfg.notional,
                                vol_target=cfg.vol_target, volatility=volatility,
                                max_leverage=self._max_leverage)
        self._trade_to(symbol, to_lots(value, book.price, instrument, cfg.max_position))

    def _trade_to(self, symbol: str, qty: float) -> None:
        """Trade toward ``qty`` unless it only resizes the position by ``rebalance`` or less."""
        current = self.position_of(symbol)
        if qty * current > 0 and abs(qty - current) <= self.config.rebalance * abs(current):
            return
        self.target_position(qty, symbol=symbol)

    # -- exits and bookkeeping ---------------------------------------------------------

    def _check_exits(self, symbol: str, close: float) -> None:
        """Close the position when the bar closed past the stop-loss or take-profit level."""
        cfg = self.config
        if self._book(symbol).exit_due(close, self.position_of(symbol), cfg.stop_loss, cfg.take_profit):
            self.target_position(0.0, symbol=symbol)

    def on_fill(self, fill: Fill) -> None:
        """Keep the average entry price of the open position."""
        self._book(fill.symbol).filled(self.position_of(fill.symbol), fill.side, fill.qty, fill.price)

    def on_save(self) -> dict[str, Any]:
        """One symbol's entry, exit block and warm-up as numbers; a portfolio's per symbol."""
        books = {s: self._book(s) for s in self.symbols}
        if len(books) == 1:
            (symbol, book), = books.items()
            return {"entry": book.entry, "blocked": book.blocked, "skipped": self.skipped,
                    "history_bars": self.history_bars_of(symbol)}
        return {"entry": {s: b.entry for s, b in books.items()},
                "blocked": {s: b.blocked for s, b in books.items()}, "skipped": self.skipped,
                "history_bars": {s: self.history_bars_of(s) for s in books}}

    def on_load(self, state: dict[str, Any]) -> None:
        entry, blocked = state.get("entry", 0.0), state.get("blocked", 0.0)
        for symbol in self.symbols:
            book = self._book(symbol)
            book.entry = entry.get(symbol, 0.0) if isinstance(entry, dict) else entry
            book.blocked = blocked.get(symbol, 0.0) if isinstance(blocked, dict) else blocked
