"""A checkpoint ready to trade: its input window kept one closed bar at a time (live), the
windows of a whole history cut at once (replay), and one forward pass that both use.

Replay and live give bit-identical outputs because the model runs the same arithmetic on
the same bits in both: one window per forward pass (batch 1), in float32, from a fresh
tensor (so the BLAS sees the same shapes and memory alignment), on the same number of
threads. Stacking windows into a larger batch would be faster (for full attention at
sequence 512, about 1.2x), but BLAS blocks a different matrix shape differently, which
changes the last bits of the outputs (measured: up to 2.4e-7 for every attention type),
enough to flip a decision at a threshold now and then. Float64 would hide that only most of
the time, at 1.5 to 11 times the cost. Windows are identical because the streaming features
equal the batch features bit for bit (:mod:`models.features`).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from models.allocator import keep_freed_memory
from models.dataset import build_frames
from models.predictor import Predictor
from models.timeframes import interval_ms


class ModelRunner:
    """A loaded checkpoint: metadata views, streaming windows, batch windows, forward."""

    def __init__(self, predictor: Predictor, path: str = "") -> None:
        self.predictor = predictor
        self.model = predictor.model.eval()
        self.meta = predictor.meta
        self.path = path
        self.head: str = self.meta["head"]
        self.horizon = int(self.meta["horizon"])
        self.interval_ms = interval_ms(self.meta["interval"])
        self.out_dim = int(self.model.config.out_dim)
        self.threads = torch.get_num_threads()

    @classmethod
    def load(cls, path: str) -> ModelRunner:
        keep_freed_memory()  # long windows otherwise page-fault on every activation
        return cls(Predictor.from_checkpoint(path), path)

    @property
    def warmup_bars(self) -> int:
        return self.predictor.warmup_bars

    @property
    def trade_from_ms(self) -> int | None:
        """Open time of the first bar whose forecast never met the training or validation
        data (labels reach ``horizon`` bars past a window), or None without a training window."""
        window = self.meta.get("training_window") or {}
        seen = [t for split in ("train", "validation") for t in window.get(split) or []]
        return max(seen) + (self.horizon + 1) * self.interval_ms if seen else None

    def stream(self) -> Predictor:
        """A fresh streaming window over this model (``push`` one closed bar at a time)."""
        return Predictor(self.model, self.meta)

    def forward(self, window: np.ndarray) -> np.ndarray:
        """Outputs for one window ``[tokens, features]`` (float32), as float64; on the thread
        count of the loading thread, whichever thread calls (OpenMP counts are per thread)."""
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        x = torch.empty((1, *window.shape), dtype=torch.float32)
        x[0] = torch.from_numpy(window)
        with torch.inference_mode():
            return self.model(x)[0].double().numpy()

    def predict_rows(self, bars: pd.DataFrame, wanted: np.ndarray,
                     durations: list[float] | None = None) -> np.ndarray:
        """Outputs ``[rows, out_dim]`` for the rows of ``bars`` where ``wanted`` is True and a
        full window exists (NaN elsewhere); each forward's seconds go to ``durations``."""
        p = self.predictor
        p.check_bars(bars)
        frames = p.normalizer.transform(build_frames(bars, p.feature_set, p.interval, tuple(p.timeframes)))
        ends = np.flatnonzero(frames.valid_ends(p.seq_len) & wanted)
        out = np.full((len(bars), self.out_dim), np.nan)
        for start in range(0, len(ends), 256):
            chunk = ends[start : start + 256]
            for row, window in zip(chunk, frames.windows(chunk, p.seq_len), strict=True):
                began = time.perf_counter()
                out[row] = self.forward(window)
                if durations is not None:
                    durations.append(time.perf_counter() - began)
        return out
