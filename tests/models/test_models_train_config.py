"""Training settings that cannot work are refused with one line before any training, both
as a ``TrainConfig`` and as the walk-forward's ``--train key=value`` settings."""

import re

import numpy as np
import pytest
import torch
from conftest import synthetic_bars

from engine.core.typed import ConfigError, build
from models import train as train_module
from models.targets import forward_log_returns
from models.train import DataError, TrainConfig, pick_device, train_model

TINY = dict(seq_len=16, epochs=1, batch_size=32, d_model=16, layers=1, heads=2, progress=False)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

BAD = [
    ({"model": "full", "attention_options": {"k": 16}}, "full takes no option 'k'; it takes none"),
    ({"model": "linformer", "attention_options": {"kk": 3}},
     "linformer takes no option 'kk'; its options: k, share_kv, share_heads"),
    ({"model": "linformer", "attention_options": {"k": 0}}, "option k must be a whole number >= 1"),
    ({"model": "linformer", "attention_options": {"k": 17}}, "linformer k 17 exceeds the 16 tokens"),
    ({"model": "linformer", "attention_options": {"k": 40}, "timeframes": ("4h",)},
     "linformer k 40 exceeds the 32 tokens"),
    ({"model": "reformer", "attention_options": {"bucket_size": "abc"}}, "bucket_size must be a whole"),
    ({"model": "reformer", "attention_options": {"n_hashes": 0}}, "n_hashes must be a whole number >= 1"),
    ({"model": "nystrom", "attention_options": {"num_landmarks": 0}}, "num_landmarks must be a whole"),
    ({"model": "nystrom", "attention_options": {"pinv_iterations": 0}}, "pinv_iterations must be a whole"),
    ({"model": "performer"}, "unknown model 'performer'"),
    ({"head": "median"}, "unknown head 'median'"),
    ({"seq_len": 0}, "seq_len must be a whole number >= 1, got 0"),
    ({"horizon": 0}, "horizon must be a whole number >= 1, got 0"),
    ({"heads": 3}, "d_model 16 is not divisible by heads 3"),
    ({"head": "allocation", "threshold": 0.3}, "threshold is for the classification head only"),
    ({"head": "classification", "threshold": -0.1}, "threshold must be >= 0"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    pytest.param({"device": "cuda"}, "device 'cuda' is not available", marks=NO_CUDA),
]


def _no_data(*args):
    raise AssertionError("bars were read")


@pytest.mark.parametrize("settings, message", BAD)
def test_bad_settings_are_refused_before_training(settings, message, monkeypatch):
    monkeypatch.setattr(train_module, "pool_of", _no_data)
    with pytest.raises(ValueError) as info:
        train_model(synthetic_bars(50), TrainConfig(**{**TINY, **settings}))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("settings, message", BAD[:3] + BAD[5:7])
def test_walk_forward_settings_are_checked_as_they_are_built(settings, message):
    """``--train`` settings become a TrainConfig through ``engine.core.typed.build``, which turns
    the config's ValueError into the one-line ConfigError the command line reports."""
    with pytest.raises(ConfigError, match=f"^--train: .*{re.escape(message)}"):
        build(TrainConfig, {**TINY, **settings}, "--train")


def test_a_horizon_past_the_data_is_refused():
    with pytest.raises(DataError, match="horizon 400 leaves no labelled window: the data has 300"):
        train_model(synthetic_bars(300), TrainConfig(**TINY, horizon=400))


def test_forward_returns_past_the_end_are_nan():
    out = forward_log_returns(np.exp(np.arange(4.0)), 6)
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[0, :3], [1.0, 2.0, 3.0])
    assert np.isnan(out[0, 3:]).all() and np.isnan(out[3]).all()


def test_cpu_and_auto_devices_are_accepted():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda")
