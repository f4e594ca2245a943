"""Training learns, splits never leak, checkpoints round-trip, and live inference equals
batched replay."""

from itertools import pairwise

import numpy as np
import pytest
import torch
from conftest import synthetic_bars
from hypothesis import given, settings
from hypothesis import strategies as st

from models.checkpoint import (
    CheckpointError,
    FeatureMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from models.dataset import Frames, predict_windows
from models.predictor import Predictor
from models.splits import chronological_split, walk_forward_folds
from models.train import TrainConfig, train_model

OPTIONS = {
    "full": {},
    "linformer": {"k": 16},
    "reformer": {"bucket_size": 8, "n_hashes": 2},
    "nystrom": {"num_landmarks": 8},
}


def _config(kind="full", **kw):
    base = dict(model=kind, seq_len=32, epochs=4, batch_size=32, lr=3e-3, d_model=16,
                layers=1, heads=2, dropout=0.0, attention_options=OPTIONS[kind],
                progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained():
    """One small trained model per attention kind, on shared bars."""
    torch.set_num_threads(1)
    bars = synthetic_bars(500, seed=5)
    return bars, {k: train_model(bars, _config(k, epochs=1, seq_len=16)) for k in OPTIONS}


@pytest.mark.parametrize("kind", OPTIONS)
def test_every_model_learns_the_synthetic_task(kind):
    result = train_model(synthetic_bars(1200), _config(kind))
    # regression loss is the MSE of standardised targets: predicting 0 scores about 1
    assert result.history[0]["val_loss"] > result.history[-1]["val_loss"]
    assert min(h["val_loss"] for h in result.history) < 0.5
    assert result.metrics["test"]["directional_accuracy"] > 0.7
    assert result.metrics["test"]["ic"] > 0.5


@pytest.mark.parametrize("head,check", [
    ("classification", lambda m: m["accuracy"] > 0.6),
    ("allocation", lambda m: m["sharpe"] > 0.5),
])
def test_classification_and_allocation_heads_learn(head, check):
    result = train_model(synthetic_bars(1200), _config("linformer", head=head, horizon=2))
    assert check(result.metrics["test"]), result.metrics["test"]


def test_multi_timeframe_training_runs():
    result = train_model(synthetic_bars(900), _config("nystrom", seq_len=16, epochs=1,
                                                      timeframes=("4h",)))
    assert result.model.config.n_timeframes == 2
    assert result.meta["timeframes"] == ["4h"]


def test_chronological_split_has_gaps_and_order():
    fold = chronological_split(1100, 0.15, 0.15, gap=3, start=100)
    assert fold.train.start == 100
    assert fold.train.stop + 3 == fold.val.start and fold.val.stop + 3 == fold.test.start
    assert fold.test.stop == 1100 and len(fold.test) == 150


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(10, 5000), n_folds=st.integers(1, 6), gap=st.integers(0, 10),
       start_frac=st.floats(0, 0.4))
def test_walk_forward_folds_never_overlap(n_rows, n_folds, gap, start_frac):
    start = int(n_rows * start_frac)
    folds = walk_forward_folds(n_rows, n_folds, gap=gap, start=start)
    assert len(folds) == n_folds
    for k, fold in enumerate(folds):
        assert fold.train.start >= start
        ranges = [r for r in (fold.train, fold.val, fold.test) if r]
        for before, after in pairwise(ranges):
            assert before.stop + gap <= after.start
        if k:
            assert fold.test.start == folds[k - 1].test.stop
            assert len(fold.train) >= len(folds[k - 1].train)
    assert folds[-1].test.stop == n_rows


def test_training_is_seeded():
    bars = synthetic_bars(700)
    a = train_model(bars, _config(epochs=1))
    b = train_model(bars, _config(epochs=1))
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_normalisation_uses_training_window_only(trained):
    bars, results = trained
    changed = bars.copy()
    n = len(bars)
    changed.loc[int(n * 0.8) :, ["open", "high", "low", "close"]] *= 3.0  # test period only
    changed.loc[int(n * 0.8) :, "volume"] *= 50
    again = train_model(changed, _config("full", epochs=1, seq_len=16))
    assert again.meta["normalization"] == results["full"].meta["normalization"]


@pytest.mark.parametrize("kind", OPTIONS)
def test_checkpoint_round_trip_and_live_equals_replay(kind, trained, tmp_path):
    bars, results = trained
    path = tmp_path / "model.pt"
    save_checkpoint(path, results[kind].model, results[kind].meta)
    blob = torch.load(path, weights_only=True)
    assert isinstance(blob["meta"], str)
    model, meta = load_checkpoint(path)
    assert meta["features"] == results[kind].meta["features"]
    for key in ("normalization", "training_window", "code_version", "interval", "seq_len"):
        assert key in meta
    predictor = Predictor(model, meta)
    replay1 = predictor.predict_history(bars, batch_size=1)
    replay = predictor.predict_history(bars, batch_size=64)
    live = [predictor.update(row) for row in bars.to_dict("records")]
    first = next(i for i, v in enumerate(live) if v is not None)
    assert first == predictor.warmup_bars - 1
    assert np.isnan(replay1[:first]).all()
    np.testing.assert_array_equal(np.array(live[first:]), replay1[first:])
    np.testing.assert_allclose(replay, replay1, rtol=0, atol=1e-6)
    original = Predictor(results[kind].model, results[kind].meta).predict_history(bars)
    np.testing.assert_array_equal(original, replay)


def test_predict_windows_uses_only_its_rows(trained):
    bars, results = trained
    model = results["full"].model
    predictor = Predictor(model, results["full"].meta)
    frames = predictor.normalizer.transform(
        Frames.single(predictor.feature_set.compute(bars)))
    out = predict_windows(model, frames.features[0], 16, batch_size=50)
    spoiled = frames.features[0].copy()
    spoiled[300:] = 7.0
    again = predict_windows(model, spoiled, 16, batch_size=50)
    np.testing.assert_array_equal(out[:300], again[:300])
    assert not np.allclose(out[300:], again[300:], equal_nan=True)


def test_checkpoint_with_other_features_is_refused(trained, tmp_path):
    bars, results = trained
    path = tmp_path / "model.pt"
    save_checkpoint(path, results["full"].model, results["full"].meta)
    with pytest.raises(FeatureMismatchError, match="missing rsi"):
        load_checkpoint(path, features=[f for f in results["full"].meta["features"]
                                        if f != "rsi"])
    with pytest.raises(FeatureMismatchError, match="bars lack column"):
        Predictor.from_checkpoint(str(path)).predict_history(bars.drop(columns=["volume"]))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a papertape"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_multi_timeframe_live_equals_replay():
    bars = synthetic_bars(640, seed=6)
    result = train_model(bars, _config("linformer", seq_len=8, epochs=1, timeframes=("4h",)))
    predictor = Predictor(result.model, result.meta)
    replay = predictor.predict_history(bars, batch_size=1)
    live = [predictor.update(row) for row in bars.itertuples(index=False)]
    ready = [i for i, v in enumerate(live) if v is not None]
    assert ready and ready == list(np.flatnonzero(np.isfinite(replay[:, 0])))
    np.testing.assert_array_equal(np.array([live[i] for i in ready]), replay[ready])


def test_streaming_refuses_incomplete_bars(trained):
    _, results = trained
    predictor = Predictor(results["full"].model, results["full"].meta)
    with pytest.raises(FeatureMismatchError, match="lacks field"):
        predictor.update({"open_time": 0, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0})
