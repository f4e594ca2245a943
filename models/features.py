"""Causal bar features, computed by one vectorised function for a whole history and,
through :class:`FeatureStream`, one bar at a time with identical values.

Every feature at row t is a function of a fixed number of bars ending at t (its
lookback), so it neither looks ahead nor depends on where the history starts: the
exponential averages of MACD are truncated to ``3 x span`` taps and renormalised. The
streaming class keeps the last ``lookback`` bars and runs the same function on them, so
live values equal the batch values wherever both are past the warm-up. Rows before the
warm-up are NaN. All features are scale-free (returns, ratios, z-scores), in float64.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VOL_WINDOW = 20
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EMA_TAPS = 3  # EMA truncated to EMA_TAPS * span bars
BB_WINDOW = 20
ATR_WINDOW = 14
VOLUME_WINDOW = 20
MOMENTUM_WINDOW = 10

LOOKBACK = {  # bars a feature needs, the current one included
    "log_return": 2,
    "realized_vol": VOL_WINDOW + 1,
    "rsi": RSI_WINDOW + 1,
    "macd": EMA_TAPS * MACD_SLOW,
    "macd_hist": EMA_TAPS * MACD_SLOW + EMA_TAPS * MACD_SIGNAL - 1,
    "bb_position": BB_WINDOW,
    "bb_width": BB_WINDOW,
    "atr": ATR_WINDOW + 1,
    "volume_z": VOLUME_WINDOW,
    "momentum": MOMENTUM_WINDOW + 1,
    "hl_range": 1,
}
FEATURES: tuple[str, ...] = tuple(LOOKBACK)
FEATURE_VERSION = 1  # bump when a definition changes: checkpoints made before are refused
BAR_FIELDS = ("open", "high", "low", "close", "volume")


def _rolling(x: np.ndarray, window: int, fn) -> np.ndarray:
    """``fn`` over each trailing window of ``x`` (``axis=-1``); NaN where incomplete."""
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = fn(sliding_window_view(x, window), axis=-1)
    return out


def _ema_weights(span: int) -> np.ndarray:
    """Truncated, renormalised EMA weights, oldest first."""
    alpha = 2.0 / (span + 1)
    w = alpha * (1 - alpha) ** np.arange(EMA_TAPS * span)[::-1]
    return w / w.sum()


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    w = _ema_weights(span)
    return _rolling(x, len(w), lambda v, axis: (v * w).sum(axis=axis))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (flat windows) and NaN kept."""
    out = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) > k:
        out[k:] = x[: len(x) - k]
    return out


def _compute(name: str, o, h, lo, c, v, log_c) -> np.ndarray:
    if name == "log_return":
        return log_c - _shift(log_c, 1)
    if name == "realized_vol":
        return _rolling(log_c - _shift(log_c, 1), VOL_WINDOW, np.std)
    if name == "rsi":
        d = c - _shift(c, 1)
        gains = _rolling(np.clip(d, 0, None), RSI_WINDOW, np.sum)
        losses = _rolling(np.clip(-d, 0, None), RSI_WINDOW, np.sum)
        return _ratio(gains - losses, gains + losses)
    if name in ("macd", "macd_hist"):
        macd = _ema(log_c, MACD_FAST) - _ema(log_c, MACD_SLOW)
        return macd if name == "macd" else macd - _ema(macd, MACD_SIGNAL)
    if name in ("bb_position", "bb_width"):
        mean, std = _rolling(c, BB_WINDOW, np.mean), _rolling(c, BB_WINDOW, np.std)
        return _ratio(c - mean, 2 * std) if name == "bb_position" else 4 * std / mean
    if name == "atr":
        prev = _shift(c, 1)
        tr = np.fmax(h - lo, np.maximum(np.abs(h - prev), np.abs(lo - prev)))
        tr[0] = np.nan
        return _rolling(tr, ATR_WINDOW, np.mean) / c
    if name == "volume_z":
        lv = np.log1p(v)
        return _ratio(lv - _rolling(lv, VOLUME_WINDOW, np.mean), _rolling(lv, VOLUME_WINDOW, np.std))
    if name == "momentum":
        return log_c - _shift(log_c, MOMENTUM_WINDOW)
    if name == "hl_range":
        return np.log(h / lo)
    raise KeyError(name)


@dataclass(frozen=True)
class FeatureSet:
    """An ordered selection of features; ``compute`` maps bars to ``[rows, features]``."""

    names: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in LOOKBACK]
        if unknown or not self.names:
            raise ValueError(f"unknown feature(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(FEATURES)}")
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def lookback(self) -> int:
        """Bars needed for the first valid row."""
        return max(LOOKBACK[n] for n in self.names)

    @property
    def warmup(self) -> int:
        """Leading rows that are NaN."""
        return self.lookback - 1

    def compute(self, bars) -> np.ndarray:
        """Features of every row of ``bars`` (DataFrame or mapping of arrays), float64."""
        cols = [np.asarray(bars[f], dtype=np.float64) for f in BAR_FIELDS]
        log_c = np.log(cols[3])
        return np.stack([_compute(n, *cols, log_c) for n in self.names], axis=1)


def _field(bar, name: str) -> float:
    return float(bar[name] if isinstance(bar, Mapping) or hasattr(bar, "iloc") else getattr(bar, name))


class FeatureStream:
    """Incremental features: ``update(bar)`` returns the newest row, equal to the batch row."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self._bars: deque[tuple[float, ...]] = deque(maxlen=feature_set.lookback)

    def update(self, bar) -> np.ndarray:
        """Add a bar (mapping, Series or object with open/high/low/close/volume)."""
        self._bars.append(tuple(_field(bar, f) for f in BAR_FIELDS))
        window = np.array(self._bars, dtype=np.float64)
        return self.feature_set.compute(dict(zip(BAR_FIELDS, window.T, strict=True)))[-1]
