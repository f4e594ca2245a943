"""The metrics' numeric read of fills (``fill_numbers``: numpy off the cursor, the symbol as a
category) gives the same values, in the same order, as the generic frame of those rows."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from pandas.api.types import CategoricalDtype

from engine.core.config import load_config
from engine.ledger.reader import FILL_NUMBERS, LedgerReader
from engine.run.backtest import run_backtest
from tests.helpers.broker import instruments_with_sol, write_trade_archive


def test_fill_numbers_equal_the_rows_of_a_portfolio_and_of_a_run_without_fills(tmp_path):
    data = [write_trade_archive(tmp_path, "2025-06-01", 6_000, seed=3 + k, symbol=s, price=p, vol=0.0008)
            for k, (s, p) in enumerate((("BTCUSDT", 30_000.0), ("ETHUSDT", 2_000.0)))]
    rules = instruments_with_sol(tmp_path)
    cfg = load_config(None, [f"ledger.path={tmp_path / 'l.db'}", f"broker.instruments={rules}",
                             "strategy.params.fast=3", "strategy.params.slow=8",
                             "strategy.params.notional=2000", "account.cash=10000000"])
    traded = run_backtest(replace(cfg, run=replace(cfg.run, data=tuple(map(str, data)),
                                                   symbols=("BTCUSDT", "ETHUSDT"))), progress=False)
    idle = run_backtest(replace(cfg, run=replace(cfg.run, data=(str(data[0]),), symbol="BTCUSDT"),
                                strategy=replace(cfg.strategy, params={"fast": 3, "slow": 5000})),
                        progress=False)
    reader = LedgerReader(tmp_path / "l.db")
    try:
        names = ["symbol", *(name for name, _ in FILL_NUMBERS)]
        numbers = reader.fill_numbers([traded.run_id])
        rows = reader.fills([traded.run_id], ", ".join(names))
        assert set(numbers["symbol"]) == {"BTCUSDT", "ETHUSDT"} and len(numbers) >= 10
        assert isinstance(numbers["symbol"].dtype, CategoricalDtype)
        pd.testing.assert_frame_equal(numbers[names].astype({"symbol": object}), rows, check_dtype=False)
        empty = reader.fill_numbers([idle.run_id])
        assert empty.empty and list(empty.columns) == names
    finally:
        reader.close()
