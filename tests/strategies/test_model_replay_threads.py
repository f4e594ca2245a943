"""Replay runs windows side by side, one OpenMP thread each, on the live forward's thread
count; its forecasts equal the live forward's (all threads, one window) to the bit, and when
one-thread outputs differ the runner replays one window at a time instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.onednn as onednn
from models.runner import CHECKED_WINDOWS, ModelRunner
from tests.helpers import model as model_helpers
from tests.helpers.model import ar1_bars, train_tiny

# big enough for the kernels to split work between two threads
SHAPES = {
    "full": {},
    "linformer": {"k": 32},
    "reformer": {"bucket_size": 16, "n_hashes": 2},
    "nystrom": {"num_landmarks": 16},
}
SETTINGS = dict(seq_len=128, d_model=64, heads=4, layers=2)


@pytest.fixture(scope="module")
def bars():
    return ar1_bars(400, seed=4)


def one_at_a_time(runner: ModelRunner, bars, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(ModelRunner, "_thread_count_free", lambda *args: False)
        return runner.predict_rows(bars, np.ones(len(bars), dtype=bool))


@pytest.mark.usefixtures("two_torch_threads")
@pytest.mark.parametrize("kind", SHAPES)
def test_side_by_side_forecasts_equal_all_thread_forwards(kind, bars, tmp_path, monkeypatch):
    monkeypatch.setitem(model_helpers.OPTIONS, kind, SHAPES[kind])
    runner = ModelRunner.load(str(train_tiny(bars, kind, tmp_path / "model.pt", **SETTINGS)))
    assert runner.threads == 2
    one_thread_calls = []
    forward = runner.forward

    def counted(window, threads=None):
        if threads == 1:
            one_thread_calls.append(1)
        return forward(window, threads)

    monkeypatch.setattr(runner, "forward", counted)
    durations: list[float] = []
    got = runner.predict_rows(bars, np.ones(len(bars), dtype=bool), durations)
    expected = one_at_a_time(runner, bars, monkeypatch)
    windows = int((~np.isnan(expected[:, 0])).sum())
    assert windows > 150
    if len(one_thread_calls) == windows:
        # the check ran the first windows on one thread too, the rest ran side by side
        assert len(durations) == CHECKED_WINDOWS  # live-like timings: the all-thread forwards
    else:
        # the documented fallback (a loaded machine can make one-thread bits differ): only the
        # check ran on one thread, and every window ran, and was timed, on all threads
        assert len(one_thread_calls) == CHECKED_WINDOWS and len(durations) == windows
    assert got.tobytes() == expected.tobytes()  # either way: the bits of one window at a time
    assert torch.get_num_threads() == 2  # the calling thread keeps its count


@pytest.mark.usefixtures("two_torch_threads")
def test_one_window_at_a_time_when_one_thread_outputs_differ(bars, tmp_path, monkeypatch, caplog):
    runner = ModelRunner.load(str(train_tiny(bars, "full", tmp_path / "model.pt", **SETTINGS)))
    forward = runner.forward

    def one_thread_differs(window, threads=None):
        out = forward(window, threads)
        return np.nextafter(out, np.inf) if threads == 1 else out

    monkeypatch.setattr(runner, "forward", one_thread_differs)
    with caplog.at_level("INFO", logger="models.runner"):
        got = runner.predict_rows(bars, np.ones(len(bars), dtype=bool))
    assert "one window at a time" in caplog.text
    assert got.tobytes() == one_at_a_time(runner, bars, monkeypatch).tobytes()


@pytest.mark.usefixtures("two_torch_threads")
def test_a_window_long_enough_for_onednn_replays_one_window_at_a_time(tmp_path, monkeypatch):
    assert onednn.AVAILABLE
    long_bars = ar1_bars(onednn.MIN_ROWS + 300, seed=5)
    model = train_tiny(long_bars, "linformer", tmp_path / "model.pt", seq_len=onednn.MIN_ROWS, batch_size=8)
    runner = ModelRunner.load(str(model))
    one_thread_calls = []
    forward = runner.forward

    def counted(window, threads=None):
        one_thread_calls.extend([1] if threads == 1 else [])
        return forward(window, threads)

    monkeypatch.setattr(runner, "forward", counted)
    got = runner.predict_rows(long_bars, np.ones(len(long_bars), dtype=bool))
    assert not one_thread_calls  # not even the check: its bits could not vouch for later windows
    assert np.isfinite(got[-1]).all()
    assert got.tobytes() == one_at_a_time(runner, long_bars, monkeypatch).tobytes()
