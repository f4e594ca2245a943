"""Training data of one symbol or several: each symbol's features, labels and window ends
come from its own bars only, and the symbols are pooled one after another (no window and no
label crosses from one symbol into another) on one shared time axis, so that a split cuts
every symbol at the same times and no symbol's test period is another's training data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.dataset import Frames, build_frames
from models.features import FeatureSet
from models.splits import Fold
from models.targets import forward_log_returns

Bars = pd.DataFrame | Mapping[str, pd.DataFrame]  # one symbol's bars, or bars per symbol


class DataError(ValueError):
    """Bars that cannot train the requested model; the message says why."""


def by_symbol(bars: Bars) -> dict[str, pd.DataFrame]:
    """``bars`` as bars per symbol (one unnamed symbol for a plain frame)."""
    return {"": bars} if isinstance(bars, pd.DataFrame) else dict(bars)


@dataclass
class Pool:
    """Every symbol's rows one after another: raw feature frames, forward returns, usable
    window ends, open times, and each row's step on the shared time axis ``times`` (every
    open time of any symbol, sorted)."""

    symbols: tuple[str, ...]
    feature_set: FeatureSet
    frames: Frames
    returns: np.ndarray
    valid: np.ndarray
    open_ms: np.ndarray
    step: np.ndarray
    times: np.ndarray
    series: np.ndarray  # per pooled row, the index of its symbol in ``symbols``

    @property
    def n_bars(self) -> int:
        return len(self.open_ms)

    @property
    def first_step(self) -> int:
        """The first step of the time axis at which some symbol has a usable window end."""
        return int(self.step[self.valid].min()) if self.valid.any() else len(self.times)

    def ends(self, steps: range) -> np.ndarray:
        """Usable window ends (pooled rows, in order) whose time is within ``steps``."""
        return np.flatnonzero(self.valid & (self.step >= steps.start) & (self.step < steps.stop))

    def fold_ends(self, fold: Fold) -> dict[str, np.ndarray]:
        return {"train": self.ends(fold.train), "validation": self.ends(fold.val),
                "test": self.ends(fold.test)}

    def window_ms(self, ends: np.ndarray) -> list[int]:
        """Open times (ms) of the first and last of ``ends`` (empty when none)."""
        return [int(self.open_ms[ends].min()), int(self.open_ms[ends].max())] if len(ends) else []


def build_pool(bars: Bars, features: tuple[str, ...], interval: str, timeframes: tuple[str, ...],
               seq_len: int, horizon: int) -> Pool:
    """The pool of ``bars`` (kline columns, each symbol's in time order)."""
    feature_set = FeatureSet(tuple(features))
    parts = by_symbol(bars)
    frames, returns, valid = [], [], []
    for symbol, frame in parts.items():
        if horizon >= len(frame):
            raise DataError(f"horizon {horizon} leaves no labelled window: the data"
                            f"{f' of {symbol}' if symbol else ''} has {len(frame)} bars and a label "
                            f"looks {horizon} bars ahead")
        built = build_frames(frame, feature_set, interval, tuple(timeframes))
        ahead = forward_log_returns(frame["close"].to_numpy(), horizon)
        frames.append(built)
        returns.append(ahead)
        valid.append(built.valid_ends(seq_len) & np.isfinite(ahead).all(axis=1))
    open_ms = np.concatenate([f["open_time"].to_numpy(np.int64) for f in parts.values()])
    times = np.unique(open_ms)
    pooled = frames[0] if len(frames) == 1 else Frames.concat(frames)
    series = np.repeat(np.arange(len(parts)), [len(f) for f in parts.values()])
    return Pool(tuple(parts), feature_set, pooled, np.concatenate(returns), np.concatenate(valid),
                open_ms, np.searchsorted(times, open_ms), times, series)


def first_usable_row(bars: Bars, config) -> int:
    """The first step of the time axis (a row, for one symbol's bars) that can end a
    training window of ``config`` (a ``TrainConfig``), or the axis' length."""
    return pool_of(bars, config).first_step


def time_steps(bars: Bars) -> int:
    """The length of the shared time axis of ``bars``: the bars' rows for one symbol."""
    return len(np.unique(np.concatenate([f["open_time"].to_numpy(np.int64)
                                         for f in by_symbol(bars).values()])))


def pool_of(bars: Bars, config) -> Pool:
    """:func:`build_pool` with the settings of ``config`` (a ``TrainConfig``)."""
    return build_pool(bars, config.features, config.interval, config.timeframes, config.seq_len,
                      config.horizon)
