"""The model strategy on a portfolio: one checkpoint trained on both symbols, a window per
symbol. With cash that never binds, each symbol trades exactly as its own one-symbol run;
forecasts computed ahead equal per-bar inference; and a planted future bar of one symbol
changes no forecast or order of any symbol before it."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from engine.core.config import load_config
from engine.run.backtest import run_backtest
from models.checkpoint import save_checkpoint
from models.train import TrainConfig, train_model
from tests.helpers.model import HOUR_MS, OPTIONS, TINY, ar1_bars, rows, write_bars

SYMBOLS = ("BTCUSDT", "ETHUSDT")
PARAMS = {"in_sample": "true", "sizing": "fixed", "notional": "2000", "threshold": "0.0002",
          "stop_loss": "0.004", "take_profit": "0.006", "rebalance": "0.1", "vol_window": "24"}
TABLES = ("orders", "order_updates", "fills")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two symbols' hourly klines (the second starts 40 bars later) and a tiny checkpoint
    trained on both."""
    root = tmp_path_factory.mktemp("pf")
    bars = {"BTCUSDT": ar1_bars(500, phi=0.3, seed=11),
            "ETHUSDT": ar1_bars(460, phi=0.3, seed=12, price=3_000.0).assign(
                open_time=lambda f: f.open_time + 40 * HOUR_MS)}
    files = {s: write_bars(b, root / f"{s}.csv") for s, b in bars.items()}
    result = train_model(bars, TrainConfig(model="full", attention_options=OPTIONS["full"], **TINY))
    ckpt = root / "pooled.pt"
    save_checkpoint(ckpt, result.model, result.meta)
    return bars, files, ckpt


def run(db, files: dict, params: dict, symbols=SYMBOLS):
    cfg = load_config(None, [f"ledger.path={db}", "strategy.name=model", "account.cash=100000000",
                             *(f"strategy.params.{k}={v}" for k, v in params.items())])
    data = tuple(f"{s}={files[s]}" for s in symbols)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=data, symbols=symbols))
    return run_backtest(cfg, progress=False)


def forecasts(db, run_id: int) -> pd.DataFrame:
    return rows(db, "predictions", run_id).drop(columns=["dropped"])


def test_each_symbol_trades_as_its_own_run(market, tmp_path):
    _, files, ckpt = market
    params = {**PARAMS, "checkpoint": ckpt}
    whole = run(tmp_path / "l.db", files, params)
    assert whole.status == "finished"
    both = forecasts(tmp_path / "l.db", whole.run_id)
    assert set(both.symbol) == set(SYMBOLS)
    for symbol in SYMBOLS:
        alone = run(tmp_path / "l.db", files, params, symbols=(symbol,))
        mine = both[both.symbol == symbol].reset_index(drop=True)
        own = forecasts(tmp_path / "l.db", alone.run_id)
        assert len(own) > 300
        pd.testing.assert_frame_equal(mine, own, check_exact=True)
        for table in ("orders", "fills"):  # order ids are numbered across the portfolio's symbols
            ours = rows(tmp_path / "l.db", table, whole.run_id).query("symbol == @symbol")
            theirs = rows(tmp_path / "l.db", table, alone.run_id)
            assert len(theirs) > 10, (symbol, table)
            keep = [c for c in theirs.columns if c not in ("client_order_id", "cash", "equity")]
            pd.testing.assert_frame_equal(ours[keep].reset_index(drop=True), theirs[keep], check_exact=True,
                                          obj=f"{symbol} {table}")


def test_forecasts_computed_ahead_equal_per_bar_inference(market, tmp_path):
    _, files, ckpt = market
    params = {**PARAMS, "checkpoint": ckpt}
    ahead = run(tmp_path / "l.db", files, params)
    per_bar = run(tmp_path / "l.db", files, params | {"batch_replay": "false"})
    for table in ("predictions", *TABLES, "equity"):
        pd.testing.assert_frame_equal(rows(tmp_path / "l.db", table, ahead.run_id),
                                      rows(tmp_path / "l.db", table, per_bar.run_id), check_exact=True,
                                      obj=table)
    assert ahead.metrics == per_bar.metrics


def test_a_planted_future_bar_of_one_symbol_changes_nothing_before_it(market, tmp_path):
    bars, files, ckpt = market
    params = {**PARAMS, "checkpoint": ckpt}
    planted = bars["ETHUSDT"].copy()
    at = 300
    planted.loc[at, ["high", "close"]] *= 1.5  # a jump in ETH's bar 300, and everything after it moves
    planted.loc[at + 1 :, ["open", "high", "low", "close"]] *= 1.5
    planted.loc[at:, "volume"] *= 20
    changed = {**files, "ETHUSDT": write_bars(planted, tmp_path / "ETHUSDT.csv")}
    before = run(tmp_path / "l.db", files, params)
    after = run(tmp_path / "l.db", changed, params)
    cut_ns = int(planted.open_time[at]) * 1_000_000  # that bar opens here; it closes an hour later
    for table, column in (("predictions", "ts_event"), ("orders", "ts_init"), ("fills", "ts_event")):
        a, b = (rows(tmp_path / "l.db", table, r.run_id) for r in (before, after))
        a, b = a[a[column] <= cut_ns].reset_index(drop=True), b[b[column] <= cut_ns].reset_index(drop=True)
        assert len(a) > 50, table
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)
    later = rows(tmp_path / "l.db", "predictions", after.run_id)
    first = rows(tmp_path / "l.db", "predictions", before.run_id)
    moved = first.merge(later, on=["symbol", "ts_event"])
    moved = moved[moved.values_x != moved.values_y]
    assert set(moved.symbol) == {"ETHUSDT"} and moved.ts_event.min() > cut_ns  # it does reach ETH later


def test_the_checkpoint_names_the_symbols_it_was_trained_on(market):
    _, _, ckpt = market
    import torch

    meta = json.loads(torch.load(ckpt, weights_only=True)["meta"])
    assert meta["symbols"] == list(SYMBOLS)


def test_a_symbol_the_checkpoint_never_saw_is_traded_with_a_warning(market, tmp_path, caplog):
    bars, files, _ = market
    config = TrainConfig(model="full", attention_options=OPTIONS["full"], **TINY)
    result = train_model({"BTCUSDT": bars["BTCUSDT"]}, config)
    assert result.meta["symbols"] == ["BTCUSDT"]
    save_checkpoint(tmp_path / "btc.pt", result.model, result.meta)
    with caplog.at_level("WARNING"):
        done = run(tmp_path / "l.db", files, {**PARAMS, "checkpoint": tmp_path / "btc.pt"})
    assert done.status == "finished"
    said = [r.getMessage() for r in caplog.records if "not on" in r.getMessage()]
    assert said == ["the checkpoint was trained on BTCUSDT, not on ETHUSDT: its forecasts come from what it "
                    "learned of the others"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        run(tmp_path / "l.db", files, {**PARAMS, "checkpoint": tmp_path / "btc.pt"}, symbols=("BTCUSDT",))
    assert not [r for r in caplog.records if "not on" in r.getMessage()]


def test_a_portfolio_of_trade_archives_forecasts_every_symbol_from_its_own_bars(tmp_path):
    """Forecasts computed ahead from each symbol's bars, as the run's aggregators make them
    (a bar that differed would stop the run), equal per-bar inference."""
    from models.cli import load_training_bars
    from tests.helpers.broker import write_trade_archive

    archives = [write_trade_archive(tmp_path, "2025-06-01", 12_000, seed, symbol, price, vol=0.0008)
                for seed, symbol, price in ((5, "BTCUSDT", 30_000.0), (6, "ETHUSDT", 2_000.0))]
    bars = load_training_bars([str(a) for a in archives], "1m")
    assert sorted(bars) == list(SYMBOLS)
    result = train_model(bars, TrainConfig(model="full", attention_options=OPTIONS["full"],
                                           **{**TINY, "interval": "1m"}))
    ckpt = tmp_path / "trades.pt"
    save_checkpoint(ckpt, result.model, result.meta)
    db = tmp_path / "l.db"
    params = {**PARAMS, "checkpoint": ckpt}
    cfg = load_config(None, [f"ledger.path={db}", "strategy.name=model", "account.cash=100000000",
                             *(f"strategy.params.{k}={v}" for k, v in params.items())])
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=tuple(map(str, archives)),
                                                           symbols=SYMBOLS, interval="1m"))
    ahead = run_backtest(cfg, progress=False)
    per_bar = run_backtest(dataclasses.replace(cfg, strategy=dataclasses.replace(
        cfg.strategy, params={**cfg.strategy.params, "batch_replay": "false"})), progress=False)
    made = rows(db, "predictions", ahead.run_id)
    assert all((made.symbol == s).sum() > 1000 for s in SYMBOLS)
    assert set(rows(db, "fills", ahead.run_id).symbol) == set(SYMBOLS)
    for table in ("predictions", *TABLES):
        pd.testing.assert_frame_equal(rows(db, table, ahead.run_id), rows(db, table, per_bar.run_id),
                                      check_exact=True, obj=table)
