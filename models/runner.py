"""A checkpoint ready to trade: its input window kept one closed bar at a time (live), the
windows of a whole history cut at once (replay), and one forward pass that both use.

Replay and live give bit-identical outputs because the model runs the same arithmetic on
the same bits in both: one window per forward pass (batch 1), in float32, from a fresh
tensor (so the BLAS sees the same shapes and memory alignment). Stacking windows into a
larger batch would be faster (for full attention at sequence 512, about 1.2x), but BLAS
blocks a different matrix shape differently, which changes the last bits of the outputs
(measured: up to 2.4e-7 for every attention type), enough to flip a decision at a
threshold now and then. Float64 would hide that only most of the time, at 1.5 to 11 times
the cost. Windows are identical because the streaming features equal the batch features
bit for bit (:mod:`models.features`).

Replay uses the cores by running windows side by side instead: one worker thread per
OpenMP thread of the live forward, each forward on one OpenMP thread. The kernels split
work across threads by rows and heads, never inside a sum, so a window's outputs do not
depend on the thread count; the runner checks that on the run's first windows and falls
back to one window at a time on all threads if any output differs. Windows long enough for
oneDNN's linears (:mod:`models.onednn`) always run one at a time: its GEMMs' bits depend on
the thread count for some windows and not others, so a check of the first ones cannot vouch
for the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

import models.onednn as onednn
from models.allocator import keep_freed_memory
from models.budget import CHECKED_FROM, DoesNotFitError, check_forward_time, check_memory
from models.checkpoint import CheckpointError
from models.dataset import build_frames
from models.predictor import Predictor
from models.timeframes import interval_ms

log = logging.getLogger(__name__)

CHECKED_WINDOWS = 8  # computed both ways before windows run side by side
CHUNK = 256


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
        """The checkpoint at ``path``, refused (:class:`CheckpointError`) when this machine
        cannot run its window (:meth:`check_fits`)."""
        keep_freed_memory()  # long windows otherwise page-fault on every activation
        runner = cls(Predictor.from_checkpoint(path), path)
        runner.check_fits()
        return runner

    def check_fits(self) -> None:
        """Refuse a window of ``CHECKED_FROM`` tokens or more whose forward passes (as many
        side by side as replay runs) would not fit in memory, or, for full attention, whose
        forward pass would take longer than one bar: every forecast would arrive late."""
        config = self.model.config
        if config.tokens < CHECKED_FROM:
            return
        interval = self.meta["interval"]
        try:
            check_memory(config, self.threads, False,
                         f"a forward pass of {self.threads} windows side by side")
            check_forward_time(config, self.interval_ms / 1000, f"one {interval} bar, in which its "
                               "forecast must arrive", self.threads)
        except DoesNotFitError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

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

    def forward(self, window: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Outputs for one window ``[tokens, features]`` (float32), as float64; on
        ``threads`` OpenMP threads (default: the loading thread's count), whichever thread
        calls (OpenMP counts are per thread)."""
        threads = threads or self.threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        x = torch.empty((1, *window.shape), dtype=torch.float32)
        x[0] = torch.from_numpy(window)
        with torch.inference_mode():
            return self.model(x)[0].double().numpy()

    def predict_rows(self, bars: pd.DataFrame, wanted: np.ndarray, durations: list[float] | None = None,
                     progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Outputs ``[rows, out_dim]`` for the rows of ``bars`` where ``wanted`` is True and a
        full window exists (NaN elsewhere). ``durations`` receives the seconds of forwards
        timed as live runs them (all threads, one window): every window's when they run one
        at a time, the first ``CHECKED_WINDOWS``' when they run side by side. ``progress``
        is told the number of wanted rows done, as they are done."""
        p = self.predictor
        p.check_bars(bars)
        frames = p.normalizer.transform(build_frames(bars, p.feature_set, p.interval, tuple(p.timeframes)))
        ends = np.flatnonzero(frames.valid_ends(p.seq_len) & wanted)
        done = progress or (lambda n: None)
        done(int(np.count_nonzero(wanted)) - len(ends))  # rows without a full window
        out = np.full((len(bars), self.out_dim), np.nan)
        first, rest = ends[:CHECKED_WINDOWS], ends[CHECKED_WINDOWS:]
        first_windows = frames.windows(first, p.seq_len)
        for row, window in zip(first, first_windows, strict=True):
            out[row] = self._timed_forward(window, durations)
            done(1)
        if len(rest) and self._thread_count_free(first_windows, out[first]):
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="replay")
            try:
                for chunk in _chunks(rest):
                    results = pool.map(lambda w: self.forward(w, threads=1), frames.windows(chunk, p.seq_len))
                    for row, result in zip(chunk, results, strict=True):
                        out[row] = result
                        done(1)
            finally:
                pool.shutdown(cancel_futures=True)  # an error or Ctrl-C: drop the windows not started
            return out
        for chunk in _chunks(rest):
            for row, window in zip(chunk, frames.windows(chunk, p.seq_len), strict=True):
                out[row] = self._timed_forward(window, durations)
                done(1)
        return out

    def _timed_forward(self, window: np.ndarray, durations: list[float] | None) -> np.ndarray:
        began = time.perf_counter()
        result = self.forward(window)
        if durations is not None:
            durations.append(time.perf_counter() - began)
        return result

    def _thread_count_free(self, windows: np.ndarray, all_threads: np.ndarray) -> bool:
        """Whether one-thread forwards of ``windows`` (in a worker thread, as replay runs
        them) equal their all-thread outputs ``all_threads`` bit for bit."""
        if self.threads < 2 or not len(windows) or onednn.in_use(self.model.config.tokens):
            return False
        with ThreadPoolExecutor(1, thread_name_prefix="replay-check") as pool:
            alone = pool.submit(lambda: [self.forward(w, threads=1) for w in windows]).result()
        same = all(a.tobytes() == b.tobytes() for a, b in zip(alone, all_threads, strict=True))
        if not same:
            log.info("one-thread forwards differ from %d-thread ones in their last bits; replaying "
                     "one window at a time on all threads", self.threads)
        return same


def _chunks(rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` in pieces of ``CHUNK``: the windows of one piece are cut at a time, so memory
    stays flat on long histories."""
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
