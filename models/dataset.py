"""Model inputs from bars: per-timeframe feature matrices, training-window normalisation,
windows of ``seq_len`` rows, and batched inference over every window end.

Window ``i`` of a single timeframe holds feature rows ``[i - seq_len + 1, i]``; with
coarser timeframes it also holds, per timeframe, the ``seq_len`` newest coarse rows closed
at base row ``i`` (coarsest segment first, base segment last). A window is valid only when
every row in it is past the features' warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from models.features import FeatureSet
from models.timeframes import aggregate, interval_ms


@dataclass
class Frames:
    """Feature matrices per timeframe (coarsest first, base last) and, for every base
    row, the row of each matrix visible at that time. Pooled frames (:meth:`concat`) hold
    several series one after another; ``starts`` gives, per timeframe, the first row of
    each series, and no window crosses from one series into the next."""

    features: list[np.ndarray]
    visible: list[np.ndarray]
    starts: list[np.ndarray] | None = None

    @classmethod
    def single(cls, features: np.ndarray) -> Frames:
        return cls([features], [np.arange(len(features))])

    @classmethod
    def concat(cls, parts: list[Frames]) -> Frames:
        """The series of ``parts`` one after another (each part one series)."""
        features, visible, starts = [], [], []
        for k in range(len(parts[0].features)):
            sizes = np.array([len(p.features[k]) for p in parts], dtype=np.int64)
            offsets = np.r_[0, np.cumsum(sizes)[:-1]]
            features.append(np.concatenate([p.features[k] for p in parts]))
            visible.append(np.concatenate([np.where(p.visible[k] >= 0, p.visible[k] + off, -1)
                                           for p, off in zip(parts, offsets, strict=True)]))
            starts.append(offsets)
        return cls(features, visible, starts)

    @property
    def n_rows(self) -> int:
        return len(self.visible[-1])

    def series_start(self, k: int, rows: np.ndarray) -> np.ndarray:
        """The first row of the series each row of timeframe ``k`` belongs to."""
        if self.starts is None:
            return np.zeros(len(rows), dtype=np.int64)
        starts = self.starts[k]
        return starts[np.searchsorted(starts, rows, side="right") - 1]

    def valid_ends(self, seq_len: int) -> np.ndarray:
        """Boolean per base row: its window exists, lies within its series and is finite in
        every timeframe."""
        valid = np.ones(self.n_rows, dtype=bool)
        for k, (feats, vis) in enumerate(zip(self.features, self.visible, strict=True)):
            finite = np.isfinite(feats).all(axis=1)
            full = np.zeros(len(feats), dtype=bool)
            if len(feats) >= seq_len:
                full[seq_len - 1 :] = sliding_window_view(finite, seq_len).all(axis=1)
            if self.starts is not None:
                rows = np.arange(len(feats))
                full &= rows - self.series_start(k, rows) >= seq_len - 1
            valid &= (vis >= 0) & full[np.clip(vis, 0, None)]
        return valid

    def windows(self, ends: np.ndarray, seq_len: int) -> np.ndarray:
        """Windows ending at base rows ``ends``: ``[len(ends), timeframes * seq_len, F]``."""
        offsets = np.arange(1 - seq_len, 1)
        parts = [feats[vis[ends][:, None] + offsets]
                 for feats, vis in zip(self.features, self.visible, strict=True)]
        return np.concatenate(parts, axis=1).astype(np.float32)


def build_frames(bars: pd.DataFrame, feature_set: FeatureSet, interval: str,
                 timeframes: tuple[str, ...] = ()) -> Frames:
    """Raw (unnormalised) features of ``bars`` at ``interval`` and coarser ``timeframes``."""
    features, visible = [], []
    for tf in sorted(timeframes, key=interval_ms, reverse=True):
        coarse, last_closed = aggregate(bars, interval, tf)
        features.append(feature_set.compute(coarse))
        visible.append(last_closed)
    features.append(feature_set.compute(bars))
    visible.append(np.arange(len(bars)))
    return Frames(features, visible)


@dataclass
class Normalizer:
    """Per-timeframe feature mean/std fitted on the training window; z-scores clipped."""

    mean: list[np.ndarray]
    std: list[np.ndarray]
    clip: float = 10.0

    @classmethod
    def fit(cls, frames: Frames, first_end: int, last_end: int, seq_len: int) -> Normalizer:
        """Statistics of the rows seen by training windows ending in ``[first_end, last_end]``."""
        means, stds = [], []
        for feats, vis in zip(frames.features, frames.visible, strict=True):
            rows = feats[max(vis[first_end] - seq_len + 1, 0) : vis[last_end] + 1]
            rows = rows[np.isfinite(rows).all(axis=1)]
            std = rows.std(axis=0)
            means.append(rows.mean(axis=0))
            stds.append(np.where(std > 0, std, 1.0))
        return cls(means, stds)

    @classmethod
    def fit_ends(cls, frames: Frames, ends: np.ndarray, seq_len: int) -> Normalizer:
        """:meth:`fit` on pooled frames: per series, the rows seen by the training windows
        ending in it (``ends`` sorted), and never a row of another series between them."""
        if frames.starts is None:
            return cls.fit(frames, ends[0], ends[-1], seq_len)
        means, stds = [], []
        for k, (feats, vis) in enumerate(zip(frames.features, frames.visible, strict=True)):
            series = frames.series_start(k, vis[ends])
            cut = np.flatnonzero(np.diff(series)) + 1
            pieces = []
            for first, last in zip(np.r_[0, cut], np.r_[cut, len(ends)] - 1, strict=True):
                lo = max(vis[ends[first]] - seq_len + 1, series[first])
                pieces.append(feats[lo : vis[ends[last]] + 1])
            rows = np.concatenate(pieces)
            rows = rows[np.isfinite(rows).all(axis=1)]
            std = rows.std(axis=0)
            means.append(rows.mean(axis=0))
            stds.append(np.where(std > 0, std, 1.0))
        return cls(means, stds)

    def transform_row(self, k: int, x: np.ndarray) -> np.ndarray:
        """Normalise rows of timeframe ``k`` (any leading shape)."""
        return np.clip((x - self.mean[k]) / self.std[k], -self.clip, self.clip)

    def transform(self, frames: Frames) -> Frames:
        return Frames([self.transform_row(k, f) for k, f in enumerate(frames.features)],
                      frames.visible, frames.starts)

    def to_dict(self) -> dict:
        return {"mean": [m.tolist() for m in self.mean], "std": [s.tolist() for s in self.std],
                "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls([np.array(m) for m in d["mean"]], [np.array(s) for s in d["std"]], d["clip"])


def run_model(model: torch.nn.Module, windows: np.ndarray) -> np.ndarray:
    """Model outputs for a stack of windows, float64, in eval mode without gradients."""
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(torch.from_numpy(windows).to(device)).double().cpu().numpy()


def predict_windows(model: torch.nn.Module, features_normalised: np.ndarray | Frames,
                    seq_len: int, batch_size: int = 256) -> np.ndarray:
    """Outputs for every window end row, ``[rows, out_dim]``, NaN where no valid window.

    ``features_normalised`` is a ``[rows, F]`` matrix or :class:`Frames`. With
    ``batch_size=1`` each row equals single-window inference bit for bit.
    """
    frames = features_normalised
    if not isinstance(frames, Frames):
        frames = Frames.single(np.asarray(features_normalised))
    ends = np.flatnonzero(frames.valid_ends(seq_len))
    out = np.full((frames.n_rows, model.config.out_dim), np.nan)
    for start in range(0, len(ends), batch_size):
        chunk = ends[start : start + batch_size]
        out[chunk] = run_model(model, frames.windows(chunk, seq_len))
    return out
