"""Strategy plots (``Strategy.plot``) through real backtests, read back from the ledger:
sma_cross's two averages are the rolling means of the closes, stamped at each bar's close
(the clock when the bar was handled), per symbol in a portfolio; a second run with the same
seed writes the same plot rows; bad names and values are counted rejections, never a crash."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from engine.core.clock import NS_PER_MS
from engine.run.backtest import run_backtest
from strategies.base import Strategy
from tests.helpers.broker import backtest_config, kline_frame, read_table, write_klines

STEP_NS = 60_000 * NS_PER_MS


def plot_rows(db, run_id: int) -> pd.DataFrame:
    return read_table(db, "SELECT symbol, name, ts, value FROM plots WHERE run_id = ? ORDER BY id", (run_id,))


@pytest.fixture(scope="module")
def klines(tmp_path_factory):
    path = tmp_path_factory.mktemp("klines") / "klines.csv"
    return path, write_klines(path, 400, seed=5, vol=0.002)


def test_sma_cross_plots_its_averages_at_each_bar_close_and_a_rerun_plots_the_same(klines, tmp_path):
    path, frame = klines
    db = tmp_path / "l.db"
    cfg = backtest_config([path], db, ["broker.latency_ms=20", "broker.latency_jitter_ms=30"],
                          fast=4, slow=11)
    runs = [run_backtest(cfg, progress=False).run_id for _ in range(2)]
    first, second = (plot_rows(db, r) for r in runs)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    closes = frame["close"]
    for name, n in (("sma_fast", 4), ("sma_slow", 11)):
        own = first[first.name == name]
        assert len(own) == len(frame) - 10  # from the bar where `slow` closes are in
        bar = (own.ts.to_numpy() - frame.open_time.iloc[0] * NS_PER_MS) // STEP_NS - 1  # the bar that closed
        assert (own.ts.to_numpy() == (frame.open_time.to_numpy()[bar] * NS_PER_MS + STEP_NS)).all()
        expected = closes.rolling(n).mean().to_numpy()[bar]
        np.testing.assert_allclose(own.value.to_numpy(), expected, rtol=1e-12)
    assert (first.symbol == "BTCUSDT").all()


def test_a_portfolio_plots_each_symbols_averages_on_its_own_bars(tmp_path):
    symbols, paths = ("BTCUSDT", "ETHUSDT"), []
    for k, symbol in enumerate(symbols):
        path = tmp_path / f"{symbol}.csv"
        kline_frame(120, seed=k, price=30_000.0 / (k + 1)).to_csv(path, index=False, float_format="%.10g")
        paths.append(f"{symbol}={path}")
    cfg = backtest_config(paths, tmp_path / "l.db", ["run.symbols=BTCUSDT,ETHUSDT"], fast=3, slow=8,
                          notional=500)
    result = run_backtest(cfg, progress=False)
    rows = plot_rows(tmp_path / "l.db", result.run_id)
    assert result.status == "finished"
    counts = rows.groupby(["symbol", "name"]).size().to_dict()
    assert counts == {(s, n): 120 - 7 for s in symbols for n in ("sma_fast", "sma_slow")}
    eth = rows[(rows.symbol == "ETHUSDT") & (rows.name == "sma_slow")].value.to_numpy()
    btc = rows[(rows.symbol == "BTCUSDT") & (rows.name == "sma_slow")].value.to_numpy()
    assert eth.mean() < btc.mean() * 0.7  # each symbol's own closes


BAD = [("", 1.0), ("x" * 41, 1.0), ("a\nb", 1.0), (None, 1.0), (["close"], 1.0), ("ok", math.nan),
       ("ok", math.inf), ("ok", -math.inf), ("ok", "high"), ("ok", "1.5"), ("ok", None), ("ok", 10**400)]


class BadPlots(Strategy):
    """Plots one good point and every bad one of ``BAD`` on each bar, and one for a symbol the
    run does not trade."""

    def on_start(self) -> None:
        self.plot("before_any_bar", 1.0)

    def on_bar(self, bar) -> None:
        self.plot("close", bar.close)
        self.plot("close", np.float32(bar.close))  # any real number type is taken
        self.plot("close", 7)
        for name, value in BAD:
            self.plot(name, value)
        self.plot("close", 1.0, symbol="DOGEUSDT")
        self.plot("close", 1.0, symbol=["BTCUSDT"])


def test_bad_plot_points_are_logged_and_counted_and_the_run_goes_on(klines, tmp_path, caplog):
    path, frame = klines
    db = tmp_path / "l.db"
    cfg = backtest_config([path], db, ["strategy.name=tests.strategies.test_plots:BadPlots"])
    with caplog.at_level("WARNING"):
        result = run_backtest(cfg, progress=False)
    assert result.status == "finished"
    rows = plot_rows(db, result.run_id)
    assert set(rows.name) == {"close", "before_any_bar"}
    assert len(rows[rows.name == "close"]) == 3 * len(frame)
    assert result.extra["plots_rejected"] == (len(BAD) + 2) * len(frame)
    summary = json.loads(read_table(db, "SELECT summary FROM runs").summary[0])
    assert summary["plots_rejected"] == result.extra["plots_rejected"]
    warned = [r.getMessage() for r in caplog.records if "plot point rejected" in r.getMessage()]
    assert len(warned) == 10 and "later rejections are only counted" in warned[-1]
    assert "value nan is not a finite number" in " ".join(warned)
    assert "value '1.5' is not a finite number" in " ".join(warned)  # a string is not a number
