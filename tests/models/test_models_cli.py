"""``papertape train`` through the engine's argparse and the bars loader."""

import argparse
import json

import pytest
import torch
from conftest import synthetic_bars

from engine.bars.kline_files import write_kline_csv
from models import train
from models.checkpoint import load_checkpoint
from models.cli import register, run


def _parse(argv):
    parser = argparse.ArgumentParser(prog="papertape")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.fixture
def kline_csv(tmp_path):
    path = tmp_path / "bars.csv"
    write_kline_csv(synthetic_bars(700), path)
    return path


SMALL = ["--seq-len", "16", "--epochs", "1", "--d-model", "16", "--layers", "1",
         "--heads", "2", "--batch-size", "32", "--no-progress"]


def test_train_prints_one_json_object(kline_csv, tmp_path, capsys):
    out = tmp_path / "m.pt"
    args = _parse(["--model", "nystrom", "--data", str(kline_csv), "--interval", "1h",
                   "--out", str(out), "--json", "--num-landmarks", "4", *SMALL])
    assert run(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["checkpoint"] == str(out)
    assert result["model"]["kind"] == "nystrom"
    assert {"directional_accuracy", "mse", "mae", "ic"} <= set(result["validation"])
    model, meta = load_checkpoint(out)
    assert meta["model"]["attention_options"] == {"num_landmarks": 4}


def test_walk_forward_writes_a_checkpoint_per_fold(kline_csv, tmp_path, capsys):
    out = tmp_path / "wf.pt"
    args = _parse(["--model", "linformer", "--data", str(kline_csv), "--out", str(out),
                   "--json", "--walk-forward", "2", "--head", "classification",
                   "--features", "log_return,rsi,momentum", *SMALL])
    assert run(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert [f["checkpoint"] for f in result["folds"]] == [
        str(tmp_path / "wf-fold0.pt"), str(tmp_path / "wf-fold1.pt")]
    first, second = (f["training_window"] for f in result["folds"])
    assert first["train"][0] == second["train"][0] and first["test"][1] < second["test"][0]
    assert result["model"]["features"] == ["log_return", "rsi", "momentum"]


@pytest.mark.parametrize("argv,message", [
    (["--model", "performer"], "unknown model 'performer'"),
    (["--seq-len", "5000"], "too few bars"),
    (["--model", "full", "--k", "8"], "--k applies to linformer only"),
    (["--features", "log_return,astrology"], "unknown feature"),
    (["--interval", "1x"], "bad interval"),
    (["--horizon", "5000"], "horizon 5000 leaves no labelled window: the data has 700 bars"),
])
def test_bad_input_gives_one_line_and_code_2(kline_csv, tmp_path, capsys, argv, message):
    args = _parse(["--data", str(kline_csv), "--out", str(tmp_path / "m.pt"), *SMALL, *argv])
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _no_training(*args):
    raise AssertionError("trained")


@pytest.mark.parametrize("argv,message", [
    (["--model", "linformer", "--k", "0"], "linformer option k must be a whole number >= 1, got 0"),
    (["--model", "linformer", "--k", "-3"], "linformer option k must be a whole number >= 1, got -3"),
    (["--model", "linformer", "--k", "17"], "linformer k 17 exceeds the 16 tokens of a window"),
    (["--model", "reformer", "--n-hashes", "0"], "n_hashes must be a whole number >= 1, got 0"),
    (["--model", "reformer", "--bucket-size", "0"], "bucket_size must be a whole number >= 1, got 0"),
    (["--model", "nystrom", "--num-landmarks", "0"], "num_landmarks must be a whole number >= 1"),
    (["--model", "nystrom", "--pinv-iterations", "0"], "pinv_iterations must be a whole number >= 1"),
    (["--seq-len", "0"], "seq_len must be a whole number >= 1, got 0"),
    (["--head", "allocation", "--threshold", "0.3"], "threshold is for the classification head only"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    pytest.param(["--device", "cuda"], "device 'cuda' is not available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["--out", "{tmp}/nodir/x.pt"], "nodir/x.pt: directory {tmp}/nodir does not exist"),
    (["--out", "{tmp}"], "is a directory"),
])
def test_bad_settings_fail_before_training(kline_csv, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(train, "train_model", _no_training)
    args = _parse(["--data", str(kline_csv), "--out", str(tmp_path / "m.pt"), *SMALL,
                   *(a.format(tmp=tmp_path) for a in argv)])
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1


def test_text_output_has_validation_and_test_metrics(kline_csv, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert run(_parse(["--data", str(kline_csv), "--out", str(out), *SMALL])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out} (full, ")
    assert [line.split()[0] for line in lines[1:]] == ["validation", "test"]
    assert all("mse" in line and "directional_accuracy" in line for line in lines[1:])


def test_missing_file_gives_code_2(tmp_path, capsys):
    assert run(_parse(["--data", str(tmp_path / "absent.csv")])) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
