"""Checkpoint files that cannot be used are refused with one line naming the file: damaged
bytes, metadata that does not fit the weights, files that are not papertape checkpoints, and
output paths that cannot be written; checkpoints from before the digest still load."""

import json

import pytest
import torch
from torch import nn

from models.checkpoint import (
    FORMAT,
    CheckpointError,
    check_writable,
    load_checkpoint,
    save_checkpoint,
    weights_digest,
)
from models.encoder import EncoderConfig, SeriesEncoder
from models.features import FEATURE_VERSION, LOOKBACK

FEATURES = ["log_return", "rsi"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SeriesEncoder(EncoderConfig(n_features=len(FEATURES), seq_len=8, d_model=16, n_heads=2,
                                       n_layers=1))


def _meta():
    return {"features": FEATURES, "feature_lookback": {f: LOOKBACK[f] for f in FEATURES},
            "feature_version": FEATURE_VERSION,
            "normalization": {"mean": [[0.0] * 2], "std": [[1.0] * 2], "clip": 10.0},
            "interval": "1h", "timeframes": [], "seq_len": 8, "head": "regression", "horizon": 1}


def _refused(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "weights_only" not in message and "arbitrary code" not in message
    return message


def _old_style(path, model, meta):
    """A checkpoint as written before the digest: no ``digest`` key."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "state_dict": state, "meta": json.dumps(meta)}, path)


def test_round_trip_keeps_the_weights(model, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, _meta())
    loaded, meta = load_checkpoint(path)
    assert meta["features"] == FEATURES
    assert weights_digest(loaded.state_dict()) == weights_digest(model.state_dict())


def test_damaged_weights_are_refused(model, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, _meta())
    raw = bytearray(path.read_bytes())
    largest = max(model.state_dict().values(), key=torch.Tensor.numel)
    at = raw.find(largest.numpy().tobytes())
    assert at > 0
    raw[at + 100 : at + 300] = bytes(200)  # torch.load does not check the zip's CRCs
    path.write_bytes(raw)
    _refused(path, "weights do not match their digest: the file is damaged")


def test_edited_metadata_is_refused(model, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, _meta())
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["meta"])
    meta["model"]["d_model"] = 32
    torch.save({**blob, "meta": json.dumps(meta)}, path)
    _refused(path, "metadata does not match its digest")
    old = tmp_path / "old.pt"  # without a digest the weights' shapes give it away
    _old_style(old, model, {**_meta(), "model": meta["model"]})
    message = _refused(old, "metadata does not match the weights")
    assert "in the file but" in message


def test_metadata_without_a_model_is_refused(model, tmp_path):
    path = tmp_path / "m.pt"
    _old_style(path, model, _meta())
    _refused(path, "metadata lacks model")
    _old_style(path, model, {**_meta(), "model": {**model.config.to_dict(), "n_heads": 3}})
    _refused(path, "metadata describes no model .*not divisible")


def test_old_checkpoint_without_digest_still_loads(model, tmp_path):
    path = tmp_path / "old.pt"
    _old_style(path, model, {**_meta(), "model": model.config.to_dict()})
    loaded, meta = load_checkpoint(path)
    assert meta["seq_len"] == 8
    assert weights_digest(loaded.state_dict()) == weights_digest(model.state_dict())


def test_foreign_files_are_one_line(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n" * 20)
    _refused(text, r"not a papertape model checkpoint \(not a torch.save zip archive")
    module = tmp_path / "linear.pt"
    torch.save(nn.Linear(2, 2), module)
    _refused(module, r"not a papertape model checkpoint \(it holds a torch.nn.modules.linear.Linear")
    other = tmp_path / "other.pt"
    torch.save({"format": "someone-else/3", "state_dict": {}}, other)
    _refused(other, "format 'someone-else/3'")
    _refused(tmp_path, "is a directory")


def test_unwritable_output_is_refused_before_writing(model, tmp_path):
    with pytest.raises(CheckpointError, match="directory .*nodir does not exist"):
        check_writable(tmp_path / "nodir" / "x.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path, model, _meta())
    check_writable(tmp_path / "x.pt")
