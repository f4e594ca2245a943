"""The model strategy's rules, by hand: signals per head, sizing, caps and lots, parameter
checks, stop-loss and take-profit exits, and trading only after the model's own data."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.broker import InstrumentBook
from engine.core.typed import ConfigError
from engine.run.session import load_strategy
from models.runner import ModelRunner
from strategies.model_sizing import annual_volatility, signal, target_notional, to_lots
from tests.helpers.model import ar1_bars, backtest, rows, train_tiny, write_bars

BTC = InstrumentBook.load().get("linear", "BTCUSDT")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return train_tiny(ar1_bars(500, seed=9), "full", root / "model.pt")


@pytest.mark.parametrize("head, values, threshold, view", [
    ("regression", [0.002], 0.001, 1.0),
    ("regression", [-0.002], 0.001, -1.0),
    ("regression", [0.0005], 0.001, 0.0),
    ("regression", [-0.01, 0.003], 0.001, 1.0),  # the model's horizon: the last output
    ("classification", [0.1, 0.2, 1.5], 0.0, 1.0),
    ("classification", [2.0, 0.2, 0.1], 0.0, -1.0),
    ("classification", [0.1, 1.0, 0.2], 0.0, 0.0),
    ("classification", [0.3, 0.2, 0.4], 0.5, 0.0),  # up is likeliest, but p(up) is only 0.37
    ("allocation", [-0.4], 0.1, -0.4),
    ("allocation", [0.05], 0.1, 0.0),
])
def test_signal_of_each_head(head, values, threshold, view):
    assert signal(head, values, threshold) == view


def test_sizing_rules_and_caps():
    kw = dict(notional=1000.0, vol_target=0.2, volatility=0.5, max_leverage=2.0)
    assert target_notional("fixed", -1.0, 10_000, **kw) == -1000.0
    assert target_notional("volatility", 1.0, 10_000, **kw) == pytest.approx(4000.0)
    assert target_notional("volatility", 1.0, 10_000, **kw | {"volatility": 0.01}) == 20_000  # capped
    assert target_notional("volatility", 1.0, 10_000, **kw | {"volatility": None}) == 0.0
    assert target_notional("allocation", -0.25, 10_000, **kw) == -5000.0
    assert target_notional("fixed", 0.0, 10_000, **kw) == 0.0


def test_quantities_are_whole_lots_above_the_minimum():
    assert to_lots(1000.0, 100_000.0, BTC, None) == 0.01
    assert to_lots(-1234.0, 100_000.0, BTC, None) == -0.012  # toward zero
    assert to_lots(50_000.0, 100_000.0, BTC, 0.2) == 0.2
    assert to_lots(40.0, 100_000.0, BTC, None) == 0.0  # below the minimum order


def test_annual_volatility():
    closes = 100 * np.exp(np.cumsum([0.0, 0.01, -0.01, 0.01, -0.01]))
    expected = np.std([0.01, -0.01] * 2, ddof=1) * math.sqrt(365)
    assert annual_volatility(closes, 365.0) == pytest.approx(expected)
    assert annual_volatility(closes[:2], 365.0) is None


@pytest.mark.parametrize("params, message", [
    ({}, "checkpoint is required"),
    ({"checkpoint": "m.pt", "threshold": "-1"}, "threshold must be >= 0"),
    ({"checkpoint": "m.pt", "sizing": "kelly"}, "'kelly' is not one of"),
    ({"checkpoint": "m.pt", "vol_window": "1"}, "vol_window must be at least 2"),
    ({"checkpoint": "m.pt", "stoploss": "0.1"}, "unknown key 'stoploss'"),
    ({"checkpoint": "missing.pt"}, "no such checkpoint"),
    ({"checkpoint": " , "}, "names no file"),
    ({"checkpoint": "m.pt", "history": "/nonexistent/*.csv"}, "history: no file matches"),
])
def test_bad_parameters_are_refused_by_name(params, message):
    with pytest.raises(ConfigError, match=message):
        load_strategy("model", params)


def test_a_threshold_the_head_never_reaches_is_refused(tmp_path):
    classes = train_tiny(ar1_bars(500, seed=9), "full", tmp_path / "c.pt", head="classification")
    with pytest.raises(ConfigError, match="threshold 1.5 is never reached by a classification forecast"):
        load_strategy("model", {"checkpoint": str(classes), "threshold": "1.5"})
    assert load_strategy("model", {"checkpoint": str(classes), "threshold": "0.5"}).head == "classification"


def test_checkpoints_that_would_trade_from_the_same_bar_are_refused(ckpt, tmp_path):
    twin = tmp_path / "twin.pt"
    shutil.copy(ckpt, twin)
    with pytest.raises(ConfigError, match="both trade from .* so one would never trade"):
        load_strategy("model", {"checkpoint": f"{ckpt},{twin}"})


IN_SAMPLE = {"in_sample": "true"}


@pytest.mark.parametrize("bars, params, warning", [
    (ar1_bars(500, seed=9)[:300], {}, "no bar of this run comes after the data the checkpoint was trained"),
    (ar1_bars(40, seed=3), IN_SAMPLE, r"needs \d+ bars before its first forecast, and the run has 40"),
])
def test_a_run_that_never_forecasts_says_why(ckpt, tmp_path, caplog, bars, params, warning):
    result = backtest(write_bars(bars, tmp_path / "b.csv"), tmp_path / "l.db", {"checkpoint": ckpt} | params)
    assert re.search(warning, caplog.text) and result.fills == 0


def test_a_run_cut_after_the_models_data_warns_that_its_window_fills_first(ckpt, tmp_path, caplog):
    bars = ar1_bars(700, seed=9)  # the training bars' closes, and more after them
    first = int(np.searchsorted(bars.open_time, ModelRunner.load(str(ckpt)).trade_from_ms))
    data = write_bars(bars.iloc[first:], tmp_path / "b.csv")
    result = backtest(data, tmp_path / "l.db", {"checkpoint": ckpt})
    said = [r for r in caplog.records if "forecasts start at" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    assert re.search(r"the first \d+ bars the model may trade \(from .*\) fill its", said[0].getMessage())
    assert result.fills > 0


def test_a_checkpoint_of_another_interval_is_refused(ckpt, tmp_path):
    data = write_bars(ar1_bars(300, step_ms=2 * 3_600_000), tmp_path / "2h.csv")
    with pytest.raises(ConfigError, match="trained on 1h bars, the run has 2h bars"):
        backtest(data, tmp_path / "l.db", {"checkpoint": ckpt})


def test_trades_only_after_the_data_the_model_saw(ckpt, tmp_path):
    bars = ar1_bars(500, seed=9)  # the training bars themselves
    result = backtest(write_bars(bars, tmp_path / "b.csv"), tmp_path / "l.db", {"checkpoint": ckpt})
    start_ns = ModelRunner.load(str(ckpt)).trade_from_ms * 1_000_000
    forecasts = rows(tmp_path / "l.db", "predictions", result.run_id)
    assert forecasts.ts_event.min() == start_ns + 3_600_000 * 1_000_000  # the first unseen bar's close
    assert rows(tmp_path / "l.db", "orders", result.run_id).ts_init.min() >= start_ns


def crash_then_rally(n_flat: int = 200) -> pd.DataFrame:
    bars = ar1_bars(n_flat + 60, phi=0.0, sigma=0.0005, seed=2)
    close = bars.close.to_numpy().copy()
    close[n_flat:n_flat + 30] = close[n_flat - 1] * np.linspace(0.99, 0.95, 30)  # down 5% ...
    close[n_flat + 30:] = close[n_flat - 1] * np.linspace(0.96, 1.10, 30)  # ... then up 10%
    bars["close"] = np.round(close, 1)
    bars["open"] = np.r_[bars.open[0], bars.close[:-1]]
    bars["high"] = bars[["open", "close"]].max(axis=1)
    bars["low"] = bars[["open", "close"]].min(axis=1)
    return bars


@pytest.mark.parametrize("side, exit_param", [(1, "stop_loss"), (-1, "take_profit")])
def test_an_exit_closes_the_position_and_the_same_side_is_not_re_entered(ckpt, tmp_path, side, exit_param):
    bars = crash_then_rally()
    params = {"checkpoint": ckpt, "in_sample": "true", "forecast": str(0.01 * side), exit_param: "0.02"}
    result = backtest(write_bars(bars, tmp_path / "b.csv"), tmp_path / "l.db", params,
                      strategy="tests.helpers.model:ConstantModel")
    fills = rows(tmp_path / "l.db", "fills", result.run_id)
    assert list(np.sign(fills.side)) == [side, -side]  # in, out; never back in the same way
    entry, exit_ = fills.price
    gain = (exit_ / entry - 1) * side
    assert gain <= -0.02 if exit_param == "stop_loss" else gain >= 0.02


def test_no_short_positions_when_shorts_are_off(ckpt, tmp_path):
    data = write_bars(ar1_bars(400, phi=0.3, seed=5), tmp_path / "b.csv")
    params = {"checkpoint": ckpt, "in_sample": "true", "allow_short": "false"}
    result = backtest(data, tmp_path / "l.db", params)
    fills = rows(tmp_path / "l.db", "fills", result.run_id)
    assert len(fills) > 10 and (fills.position >= 0).all()


def test_volatility_sizing_targets_the_volatility(ckpt, tmp_path):
    bars = ar1_bars(300, phi=0.0, sigma=0.004, seed=1)
    params = {"checkpoint": ckpt, "in_sample": "true", "forecast": "0.01", "sizing": "volatility",
              "vol_target": "0.1", "vol_window": "100", "max_leverage": "5"}
    result = backtest(write_bars(bars, tmp_path / "b.csv"), tmp_path / "l.db", params,
                      strategy="tests.helpers.model:ConstantModel")
    first = rows(tmp_path / "l.db", "fills", result.run_id).iloc[0]
    realised = 0.004 * math.sqrt(8760)  # per-bar sigma, annualised
    assert first.qty * first.price == pytest.approx(10_000 * 0.1 / realised, rel=0.2)


@pytest.mark.parametrize("account_leverage, expected", [(1.0, 1.0), (2.0, 2.0)])
def test_max_leverage_is_capped_by_the_account_leverage(ckpt, tmp_path, caplog, account_leverage, expected):
    bars = ar1_bars(300, phi=0.0, sigma=0.004, seed=1)
    params = {"checkpoint": ckpt, "in_sample": "true", "forecast": "0.01", "sizing": "allocation",
              "max_leverage": "2"}
    result = backtest(write_bars(bars, tmp_path / "b.csv"), tmp_path / "l.db", params,
                      f"account.leverage={account_leverage}", strategy="tests.helpers.model:ConstantModel")
    first = rows(tmp_path / "l.db", "fills", result.run_id).iloc[0]
    assert not result.rejections
    assert first.qty * first.price == pytest.approx(10_000 * expected, rel=0.01)
    warned = "above the account's leverage 1" in caplog.text
    assert warned == (account_leverage < 2)


def test_walk_forward_is_for_the_model_strategy(tmp_path, capsys):
    from engine.cli import main

    assert main(["backtest", "--walk-forward", "2", "--ledger", str(tmp_path / "l.db"), "--no-progress"]) == 2
    assert "--walk-forward trains models for --strategy model, not sma_cross" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--walk-forward", "0"], "--walk-forward takes a number of folds, at least 1, got 0"),
    (["--walk-forward", "2", "--param", "checkpoint=m.pt"], "leave out --param checkpoint"),
])
def test_walk_forward_refuses_settings_it_would_ignore(tmp_path, capsys, args, message):
    from engine.cli import main

    assert main(["backtest", "--strategy", "model", *args, "--ledger", str(tmp_path / "l.db"),
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_walk_forward_with_too_many_folds_says_the_folds_are_the_problem(tmp_path, capsys):
    from engine.cli import main

    data = write_bars(ar1_bars(600, seed=4), tmp_path / "b.csv")
    argv = ["backtest", "--strategy", "model", "--walk-forward", "20", "--data", str(data), "--ledger",
            str(tmp_path / "l.db"), "--no-progress", "--train", "seq_len=16", "--train", "epochs=1",
            "--checkpoints", str(tmp_path / "folds")]
    assert main(argv) == 2
    assert "in this fold (fewer folds give it more)" in capsys.readouterr().err
    assert not any((tmp_path / "folds").iterdir())  # no empty folder left for the failed run


def test_walk_forward_names_its_run_and_keeps_earlier_runs_checkpoints(tmp_path, capsys):
    from engine.cli import main

    data = write_bars(ar1_bars(600, seed=4), tmp_path / "b.csv")
    train = ["seq_len=16", "epochs=1", "d_model=8", "layers=1", "heads=2", "features=log_return"]
    argv = ["backtest", "--strategy", "model", "--walk-forward", "1", "--data", str(data), "--ledger",
            str(tmp_path / "l.db"), "--checkpoints", str(tmp_path / "folds"), "--no-progress",
            *(arg for t in train for arg in ("--train", t))]
    folders = []
    for run_id in (1, 2):
        assert main(argv) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith(f"run {run_id} (finished) in {tmp_path / 'l.db'}: ")
        folders.append(first.split("fold checkpoints in ")[1])
    assert folders[0] != folders[1]
    assert all((Path(folder) / "fold0.pt").exists() for folder in folders)
