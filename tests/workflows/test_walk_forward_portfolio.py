"""Walk-forward on a portfolio: every fold trains one model on both symbols (pooled), the
fold boundaries are one set of times for both, no fold trades a period any of its symbols'
training data reached, and every symbol's forecasts are counted."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from engine.core.config import load_config
from models.runner import ModelRunner
from tests.helpers.live import query
from tests.helpers.model import HOUR_MS, ar1_bars, write_bars
from workflows.walk_forward import run_walk_forward

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TRAIN = {"seq_len": "16", "epochs": "1", "d_model": "16", "layers": "1", "heads": "2", "dropout": "0",
         "batch_size": "32", "features": "log_return,rsi"}


@pytest.mark.usefixtures("one_torch_thread")
def test_a_portfolio_walk_forward_cuts_every_symbol_at_the_same_times(tmp_path):
    eth = ar1_bars(560, phi=0.2, seed=4, price=3_000.0).assign(open_time=lambda f: f.open_time + 40 * HOUR_MS)
    files = {"BTCUSDT": write_bars(ar1_bars(600, phi=0.2, seed=3), tmp_path / "btc.csv"),
             "ETHUSDT": write_bars(eth, tmp_path / "eth.csv")}
    ledger = tmp_path / "wf.db"
    cfg = load_config(None, [f"ledger.path={ledger}", "strategy.name=model", "account.cash=100000000",
                             "strategy.params.notional=2000"])
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(
        cfg.run, data=tuple(f"{s}={p}" for s, p in files.items()), symbols=SYMBOLS))
    result = run_walk_forward(cfg, 2, TRAIN, tmp_path / "folds", progress=False)
    assert result["status"] == "finished" and result["symbols"] == list(SYMBOLS)
    folds = result["walk_forward"]["folds"]
    for k, fold in enumerate(folds):
        seen_until = max(fold["train"][1], fold["validation"][1])
        assert seen_until + 2 * HOUR_MS <= fold["test"][0]  # the last label too, of either symbol
        assert k == 0 or folds[k - 1]["test"][1] == fold["test"][0]
        runner = ModelRunner.load(fold["checkpoint"])
        assert runner.meta["symbols"] == list(SYMBOLS) and runner.trade_from_ms == fold["test"][0]
    forecasts = query(ledger, "SELECT symbol, ts_event FROM predictions")
    orders = query(ledger, "SELECT symbol, ts_init FROM orders")
    first_close = (folds[0]["test"][0] + HOUR_MS) * 1_000_000
    for symbol in SYMBOLS:
        mine = forecasts[forecasts.symbol == symbol]
        assert len(mine) > 150 and mine.ts_event.min() == first_close, symbol
        assert (orders[orders.symbol == symbol].ts_init >= first_close).all()
        assert (orders.symbol == symbol).sum() > 5, symbol
    overall = result["walk_forward"]["overall"]
    assert 300 < overall["predictions"] <= len(forecasts)
    assert pd.Series([f["predictions"] for f in folds]).sum() == overall["predictions"]
