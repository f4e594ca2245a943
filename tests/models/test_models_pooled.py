"""Training on several symbols: each window and label within one symbol, one time split for
all of them, and nothing after a symbol's training period reaching the model."""

import argparse
import json

import numpy as np
import pytest
from conftest import HOUR_MS, synthetic_bars

from engine.bars.kline_files import write_kline_csv
from models.checkpoint import load_checkpoint
from models.cli import register, run
from models.dataset import Normalizer, build_frames
from models.features import FeatureSet
from models.pooled import build_pool, first_usable_row, time_steps
from models.splits import chronological_split, walk_forward_folds
from models.train import TrainConfig, train_model

SEQ = 16
TINY = dict(model="full", seq_len=SEQ, epochs=1, batch_size=32, d_model=16, layers=1, heads=2,
            dropout=0.0, progress=False)


def _symbols() -> dict:
    """Two symbols of different price levels; the second starts 100 bars later and ends 50
    bars earlier, so their rows do not line up."""
    a = synthetic_bars(600, seed=1)
    b = synthetic_bars(450, seed=2).assign(open_time=lambda f: f.open_time + 100 * HOUR_MS)
    for col in ("open", "high", "low", "close"):
        b[col] *= 30.0
    return {"AAAUSDT": a, "BBBUSDT": b}


@pytest.mark.parametrize("timeframes", [(), ("4h",)])
def test_every_pooled_window_is_its_own_symbols_window(timeframes):
    parts = _symbols()
    features = FeatureSet().names
    pool = build_pool(parts, features, "1h", timeframes, SEQ, 1)
    offset = 0
    for symbol, bars in parts.items():
        alone = build_frames(bars, FeatureSet(features), "1h", timeframes)
        valid = alone.valid_ends(SEQ) & np.isfinite(np.log(bars.close.shift(-1) / bars.close)).to_numpy()
        rows = slice(offset, offset + len(bars))
        assert np.array_equal(pool.valid[rows], valid), symbol
        ends = np.flatnonzero(valid)
        np.testing.assert_array_equal(pool.frames.windows(ends + offset, SEQ), alone.windows(ends, SEQ))
        offset += len(bars)
    # a window of the second symbol never starts in the first one's rows
    first_b = len(parts["AAAUSDT"])
    assert not pool.valid[first_b : first_b + SEQ - 1].any()


def test_one_cut_time_for_every_symbol():
    parts = _symbols()
    config = TrainConfig(**TINY, horizon=3)
    result = train_model(parts, config)
    window = result.meta["training_window"]
    assert result.meta["symbols"] == ["AAAUSDT", "BBBUSDT"]
    by_symbol = result.meta["metrics_by_symbol"]  # each symbol's held-out windows, which add up to all
    for split in ("validation", "test"):
        assert sum(by_symbol[s][split]["n"] for s in by_symbol) == result.metrics[split]["n"]
    # no train window of any symbol ends after the cut, nor does its label reach past it
    assert window["train"][1] + 3 * HOUR_MS < window["validation"][0]
    assert window["validation"][1] + 3 * HOUR_MS < window["test"][0]
    pool = build_pool(parts, config.features, "1h", (), SEQ, 3)
    fold = chronological_split(len(pool.times), 0.15, 0.15, 3, pool.first_step)
    ends = pool.fold_ends(fold)
    cut = pool.times[fold.val.start]
    for symbol, (lo, hi) in zip(pool.symbols, [(0, 600), (600, 1050)], strict=True):
        mine = {k: e[(e >= lo) & (e < hi)] for k, e in ends.items()}
        assert all(len(e) for e in mine.values()), symbol  # every symbol is in every split
        assert pool.open_ms[mine["train"]].max() + 3 * HOUR_MS < cut
        assert pool.open_ms[mine["validation"]].min() >= cut


def test_nothing_after_the_training_period_reaches_the_model():
    parts = _symbols()
    config = TrainConfig(**TINY)
    first = train_model(parts, config)
    cut = first.meta["training_window"]["validation"][1] + 2 * HOUR_MS
    changed = {s: b.copy() for s, b in parts.items()}
    late = changed["BBBUSDT"].open_time > cut  # only the second symbol's test period
    changed["BBBUSDT"].loc[late, ["open", "high", "low", "close"]] *= 5.0
    changed["BBBUSDT"].loc[late, "volume"] *= 40
    again = train_model(changed, config)
    assert again.meta["normalization"] == first.meta["normalization"]
    weights = again.model.state_dict()
    for name, w in first.model.state_dict().items():
        assert np.array_equal(w.numpy(), weights[name].numpy()), name
    assert first.metrics["validation"] == again.metrics["validation"]
    assert first.metrics["test"] != again.metrics["test"]


def test_pooled_normalisation_takes_each_symbols_training_rows_only():
    parts = _symbols()
    pool = build_pool(parts, FeatureSet().names, "1h", (), SEQ, 1)
    ends = np.flatnonzero(pool.valid)
    a_train, b_train = ends[(ends > 100) & (ends < 300)], ends[(ends > 700) & (ends < 800)]
    norm = Normalizer.fit_ends(pool.frames, np.r_[a_train, b_train], SEQ)
    feats = pool.frames.features[0]
    rows = np.concatenate([feats[e[0] - SEQ + 1 : e[-1] + 1] for e in (a_train, b_train)])
    np.testing.assert_array_equal(norm.mean[0], rows.mean(axis=0))


def test_walk_forward_folds_on_the_shared_axis():
    parts = _symbols()
    config = TrainConfig(**TINY)
    assert time_steps(parts) == 600  # the second symbol's times all fall within the first's
    folds = walk_forward_folds(time_steps(parts), 2, gap=1, start=first_usable_row(parts, config))
    results = [train_model(parts, config, fold) for fold in folds]
    first, second = (r.meta["training_window"] for r in results)
    assert first["train"][0] == second["train"][0] and first["test"][1] < second["test"][0]


def _parse(argv):
    parser = argparse.ArgumentParser(prog="papertape")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


SMALL = ["--seq-len", "16", "--epochs", "1", "--d-model", "16", "--layers", "1", "--heads", "2",
         "--batch-size", "32", "--no-progress"]


def test_train_cli_takes_symbol_named_kline_files(tmp_path, capsys):
    paths = {}
    for symbol, bars in _symbols().items():
        paths[symbol] = tmp_path / f"{symbol.lower()}.csv"
        write_kline_csv(bars, paths[symbol])
    out = tmp_path / "pooled.pt"
    argv = ["--data", *(f"{s}={p}" for s, p in paths.items()), "--out", str(out), "--json", *SMALL]
    assert run(_parse(argv)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["symbols"] == ["AAAUSDT", "BBBUSDT"] and result["bars"] == 1050
    assert set(result["by_symbol"]) == {"AAAUSDT", "BBBUSDT"}
    assert run(_parse([a for a in argv if a != "--json"])) == 0
    text = capsys.readouterr().out
    assert "  AAAUSDT test: mse" in text and "  BBBUSDT validation: mse" in text
    _, meta = load_checkpoint(out)
    assert meta["symbols"] == ["AAAUSDT", "BBBUSDT"]
    # a kline file that names no symbol beside one that does: one line, code 2
    assert run(_parse(["--data", f"AAAUSDT={paths['AAAUSDT']}", str(paths["BBBUSDT"]),
                       "--out", str(out), *SMALL])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no symbol" in err[0]


def test_train_cli_pools_trade_archives_by_their_symbol(tmp_path, capsys):
    from tests.helpers.broker import write_trade_archive

    archives = [write_trade_archive(tmp_path, "2025-06-01", 20_000, seed, symbol, price)
                for seed, symbol, price in ((1, "BTCUSDT", 30_000.0), (2, "ETHUSDT", 2_000.0))]
    out = tmp_path / "trades.pt"
    assert run(_parse(["--data", *map(str, archives), "--interval", "1m", "--out", str(out), "--json",
                       *SMALL])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["symbols"] == ["BTCUSDT", "ETHUSDT"] and result["bars"] == 2 * 1440
    assert run(_parse(["--data", f"ETHUSDT={archives[0]}", "--interval", "1m", "--out", str(out),
                       *SMALL])) == 2
    assert "ETHUSDT= names a linear trade archive of BTCUSDT" in capsys.readouterr().err
