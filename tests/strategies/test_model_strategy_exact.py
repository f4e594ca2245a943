"""Backtest forecasts computed ahead in one pass equal per-bar inference to the bit, for every
attention type, and so do the orders, fills and equity they lead to."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.bars.kline_files import read_kline_csv
from engine.feeds.history.sources import load_bars_from
from models.predictor import Predictor
from tests.helpers.model import OPTIONS, ar1_bars, backtest, rows, train_tiny, write_bars

TRADING = {"in_sample": "true", "sizing": "volatility", "vol_window": "24", "stop_loss": "0.004",
           "take_profit": "0.006", "threshold": "0.0002", "rebalance": "0.1"}
TABLES = ("predictions", "orders", "order_updates", "fills", "equity")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def klines(tmp_path_factory):
    path = write_bars(ar1_bars(700, phi=0.3, seed=11), tmp_path_factory.mktemp("klines") / "bars.csv")
    return read_kline_csv(path), path  # the bars as the backtest reads them


def both_paths(data, ledger, params, *sets):
    """The run with forecasts computed ahead, then the same run bar by bar."""
    ahead = backtest(data, ledger, params, *sets)
    per_bar = backtest(data, ledger, params | {"batch_replay": "false"}, *sets)
    return ahead, per_bar


def assert_same_ledger(db, run_a, run_b) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        a, b = rows(db, table, run_a), rows(db, table, run_b)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)
        counts[table] = len(a)
    return counts


def forecasts(db, run_id) -> dict[int, list[float]]:
    frame = rows(db, "predictions", run_id)
    return dict(zip(frame.ts_event.tolist(), map(json.loads, frame["values"]), strict=True))


@pytest.mark.parametrize("kind", OPTIONS)
def test_forecasts_and_orders_computed_ahead_equal_per_bar_inference(kind, klines, tmp_path):
    bars, data = klines
    ckpt = train_tiny(bars, kind, tmp_path / "model.pt")
    ahead, per_bar = both_paths(data, tmp_path / "ledger.db", {"checkpoint": ckpt, **TRADING})
    counts = assert_same_ledger(tmp_path / "ledger.db", ahead.run_id, per_bar.run_id)
    assert counts["predictions"] > 500 and counts["fills"] > 20, counts
    assert ahead.metrics == per_bar.metrics
    # and both equal the models package's own streaming inference, bit for bit
    predictor = Predictor.from_checkpoint(str(ckpt))
    got = forecasts(tmp_path / "ledger.db", ahead.run_id)
    step_ns = 3_600_000 * 1_000_000
    for row in bars.to_dict("records"):
        reference = predictor.update(row)
        close_ns = row["open_time"] * 1_000_000 + step_ns
        if reference is None:
            assert close_ns not in got
        else:
            assert got.pop(close_ns) == reference.tolist()
    assert not got


def test_trade_archives_give_the_same_forecasts_and_fills_both_ways(sample_files, tmp_path):
    bars = load_bars_from([str(p) for p in sample_files], "5m")
    ckpt = train_tiny(bars, "linformer", tmp_path / "model.pt", interval="5m")
    data = [str(p) for p in sample_files]
    ahead, per_bar = both_paths(data, tmp_path / "ledger.db", {"checkpoint": ckpt, **TRADING},
                                "run.interval=5m")
    counts = assert_same_ledger(tmp_path / "ledger.db", ahead.run_id, per_bar.run_id)
    assert counts["predictions"] > 700 and counts["fills"] > 20, counts


def test_inference_latency_delays_forecasts_and_orders(klines, tmp_path):
    bars, data = klines
    ckpt = train_tiny(bars, "full", tmp_path / "model.pt")
    db, params = tmp_path / "ledger.db", {"checkpoint": ckpt, "in_sample": "true"}
    plain = backtest(data, db, params)
    late = backtest(data, db, params | {"inference_latency_ms": "750"})
    measured = backtest(data, db, params | {"measure_latency": "true"})
    p0, p1 = rows(db, "predictions", plain.run_id), rows(db, "predictions", late.run_id)
    p0 = p0.iloc[:-1]  # the last bar's forecast would arrive after the end of the data
    assert len(p1) == len(p0) and (p1.latency_ns == 750_000_000).all()
    assert (p1.ts_init == p0.ts_init + 750_000_000).all()
    assert p1["values"].equals(p0["values"])
    o0, o1 = rows(db, "orders", plain.run_id), rows(db, "orders", late.run_id)
    assert len(o1) > 20 and len(o0) - len(o1) in (0, 1)  # maybe an order on that last forecast
    assert (o1.ts_init == o0.ts_init.iloc[: len(o1)] + 750_000_000).all()
    f0, f1 = rows(db, "fills", plain.run_id), rows(db, "fills", late.run_id)
    assert (f1.ts_event == f0.ts_event + 750_000_000).all()  # filled at the same bar open price
    times = ["ts_event", "ts_init"]
    pd.testing.assert_frame_equal(f0.drop(columns=times), f1.drop(columns=times))
    latency = rows(db, "predictions", measured.run_id).latency_ns
    assert latency.nunique() == 1 and 0 < latency.iloc[0] < 1e9


def test_forecasts_later_than_the_next_bar_are_dropped_and_counted_in_the_result(klines, tmp_path):
    bars, data = klines
    ckpt = train_tiny(bars, "full", tmp_path / "model.pt")
    db = tmp_path / "ledger.db"
    result = backtest(data, db, {"checkpoint": ckpt, "in_sample": "true", "inference_latency_ms": "3600001"})
    forecasts = rows(db, "predictions", result.run_id)
    assert len(forecasts) > 100 and forecasts.dropped.all()
    assert result.to_json()["predictions_dropped"] == len(forecasts)
    assert result.fills == 0
