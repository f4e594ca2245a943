"""Helpers for the model-strategy tests: seeded synthetic klines, tiny checkpoints trained
in the test's directory, backtests through the engine, ledger reads, and test strategies
loaded as ``tests.helpers.model:Class``."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from engine.bars.kline_files import write_kline_csv
from engine.core.config import load_config
from engine.run.backtest import run_backtest
from engine.run.session import SessionResult
from models.checkpoint import save_checkpoint
from models.train import TrainConfig, train_model
from strategies.model import ModelConfig, ModelStrategy

HOUR_MS = 3_600_000
START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
OPTIONS = {  # attention options small enough for seq_len 16
    "full": {},
    "linformer": {"k": 8},
    "reformer": {"bucket_size": 4, "n_hashes": 2},
    "nystrom": {"num_landmarks": 4},
}
TINY = dict(seq_len=16, epochs=1, batch_size=32, lr=3e-3, d_model=16, layers=1, heads=2, dropout=0.0,
            progress=False)


def ar1_bars(n: int, phi: float = 0.1, sigma: float = 0.004, seed: int = 0, price: float = 50_000.0,
             step_ms: int = HOUR_MS) -> pd.DataFrame:
    """Klines whose close-to-close log returns follow ``r_t = phi r_{t-1} + sigma e_t``
    (``phi=0``: a random walk). Each bar opens at the previous close, so a market order
    sent at a close fills at that price and earns exactly the next bar's return."""
    rng = np.random.default_rng(seed)
    shocks = sigma * rng.standard_normal(n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + shocks[t]
    close = np.round(price * np.exp(np.cumsum(r)), 1)
    open_ = np.r_[price, close[:-1]]
    wick = np.abs(rng.normal(0, sigma / 2, (2, n)))
    volume = rng.lognormal(2, 0.5, n)
    return pd.DataFrame({
        "open_time": START_MS + step_ms * np.arange(n, dtype=np.int64),
        "open": open_,
        "high": np.round(np.maximum(open_, close) * (1 + wick[0]), 1),
        "low": np.round(np.minimum(open_, close) * (1 - wick[1]), 1),
        "close": close,
        "volume": volume,
        "turnover": volume * close,
        "trades": rng.poisson(100, n).astype(np.int64),
    })


def write_bars(bars: pd.DataFrame, path: Path) -> Path:
    write_kline_csv(bars, path)
    return path


def train_tiny(bars: pd.DataFrame, kind: str, path: Path, **settings) -> Path:
    """Train a tiny ``kind`` model on ``bars`` (1h) and save it to ``path``."""
    config = TrainConfig(model=kind, attention_options=OPTIONS[kind], **{**TINY, **settings})
    result = train_model(bars, config)
    save_checkpoint(path, result.model, result.meta)
    return path


def backtest(data: Path | list[str], ledger: Path, params: dict, *sets: str,
             strategy: str = "model") -> SessionResult:
    """A backtest through the engine with ``--param`` ``params`` and ``--set`` ``sets``."""
    cfg = load_config(None, [f"ledger.path={ledger}", f"strategy.name={strategy}",
                             *(f"strategy.params.{k}={v}" for k, v in params.items()), *sets])
    files = (str(data),) if isinstance(data, Path) else tuple(data)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=files))
    return run_backtest(cfg, progress=False)


def rows(db: Path, table: str, run_id: int) -> pd.DataFrame:
    """A run's rows of ``table`` in id order, without the id and run_id columns."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        frame = pd.read_sql_query(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY id", con,
                                  params=(run_id,))
    finally:
        con.close()
    return frame.drop(columns=["id", "run_id"])


# -- test strategies ---------------------------------------------------------------------

class Slowed(nn.Module):
    """A model that sleeps ``delay_s`` before every ``every``-th forward pass."""

    def __init__(self, model: nn.Module, delay_s: float, every: int) -> None:
        super().__init__()
        self.inner, self.delay_s, self.every, self.calls = model, delay_s, every, 0
        self.config = model.config
        self.threads: set[int] = set()  # the threads its passes ran on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.calls % self.every == 0:
            time.sleep(self.delay_s)
        return self.inner(x)


@dataclasses.dataclass(frozen=True)
class SlowConfig(ModelConfig):
    delay_s: float = 3.0
    every: int = 2


class WatchedWarmUp(ModelStrategy):
    """The model strategy that saves, per symbol, the close times of the live bars that
    reached it before its last history did (the bars the warm-up held, in order): the first
    forecast is of the newest of them, or of the first live bar when none was held, however
    long the history took to load."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self._events = 0  # on_bar and on_history calls so far, in the event loop's order
        self._bars_seen: dict[str, list[tuple[int, int]]] = {}  # symbol -> (event, close time)
        self._history_seen: dict[str, int] = {}  # symbol -> the event of its last history

    def on_bar(self, bar) -> None:
        self._events += 1
        self._bars_seen.setdefault(bar.symbol, []).append((self._events, bar.close_time))
        super().on_bar(bar)

    def on_history(self, history) -> None:
        self._events += 1
        self._history_seen[history.symbol] = self._events
        super().on_history(history)

    def on_save(self) -> dict:
        held = {s: [close for event, close in seen if event < self._history_seen.get(s, self._events + 1)]
                for s, seen in self._bars_seen.items()}
        return super().on_save() | {"held_by_warmup": held}


def first_forecast_due(state: dict, symbol: str, first_close: int) -> int:
    """The close time the first forecast of ``symbol`` is for, from :class:`WatchedWarmUp`'s
    saved ``state``: the newest bar the warm-up held, else the first live bar's (``first_close``)."""
    held = state["held_by_warmup"].get(symbol, [])
    return held[-1] if held else first_close


class SlowModel(WatchedWarmUp):
    """The model strategy with a model made slow on purpose; records, on the event thread,
    how late each bar reached it (wall clock minus bar close, a test's view only, with the
    bar's close time), and whether a forward pass ever ran on that thread."""

    config_class = SlowConfig

    def __init__(self, config: SlowConfig | None = None) -> None:
        super().__init__(config)
        for runner in self.runners:
            runner.model = Slowed(runner.model, self.config.delay_s, self.config.every)
        self.bar_lag_s: list[tuple[int, float]] = []
        self.bar_threads: set[int] = set()
        self.predictions = 0

    def on_bar(self, bar) -> None:
        self.bar_lag_s.append((bar.close_time, (time.time_ns() - bar.close_time) / 1e9))
        self.bar_threads.add(threading.get_ident())
        super().on_bar(bar)

    def on_prediction(self, prediction) -> None:
        self.predictions += 1
        super().on_prediction(prediction)

    def on_save(self) -> dict:
        passes = set().union(*(runner.model.threads for runner in self.runners))
        return super().on_save() | {"bar_lag_s": self.bar_lag_s, "predictions_used": self.predictions,
                                    "passes_on_the_event_thread": len(passes & self.bar_threads)}


WINDOWS: list[np.ndarray] = []  # what SpyModel's model was handed, in call order


class Recording(nn.Module):
    """A model that keeps a copy of every input window in :data:`WINDOWS`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner, self.config = model, model.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        WINDOWS.extend(x.numpy().copy())
        return self.inner(x)


class SpyModel(ModelStrategy):
    """The model strategy whose models record their inputs."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        for runner in self.runners:
            runner.model = Recording(runner.model)


class Constant(nn.Module):
    """A model that always forecasts ``value``."""

    def __init__(self, model: nn.Module, value: float) -> None:
        super().__init__()
        self.config, self.value = model.config, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.config.out_dim), self.value)


@dataclasses.dataclass(frozen=True)
class ConstantConfig(ModelConfig):
    forecast: float = 0.01


class ConstantModel(ModelStrategy):
    """The model strategy with a model that always says the same (decisions by hand)."""

    config_class = ConstantConfig

    def __init__(self, config: ConstantConfig | None = None) -> None:
        super().__init__(config)
        for runner in self.runners:
            runner.model = Constant(runner.model, self.config.forecast)
