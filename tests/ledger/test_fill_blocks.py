"""The metrics' numeric read of fills (``fill_blocks``: numpy off the cursor a block at a time,
the symbol as a code) gives the same values, in the same order, as the generic frame of those
rows, and the counts of each symbol's fills."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from engine.core.config import load_config
from engine.ledger import reader as reader_module
from engine.ledger.reader import FILL_NUMBERS, LedgerReader
from engine.run.backtest import run_backtest
from tests.helpers.broker import instruments_with_sol, write_trade_archive


def test_fill_blocks_equal_the_rows_of_a_portfolio_and_of_a_run_without_fills(tmp_path, monkeypatch):
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
        monkeypatch.setattr(reader_module, "NUMERIC_BLOCK", 7)  # several blocks, one cut anywhere
        symbols, counts, blocks = reader.fill_blocks([traded.run_id])
        blocks = list(blocks)
        rows = reader.fills([traded.run_id], ", ".join(names))
        assert symbols == ["BTCUSDT", "ETHUSDT"] and len(rows) >= 10 and len(blocks) > 1
        assert counts == [int((rows.symbol == s).sum()) for s in symbols]
        numbers = pd.DataFrame({name: np.concatenate([b[name] for b in blocks]) for name in names})
        numbers["symbol"] = [symbols[k] for k in numbers["symbol"]]
        pd.testing.assert_frame_equal(numbers, rows, check_dtype=False)
        symbols, counts, blocks = reader.fill_blocks([idle.run_id])
        assert symbols == [] and counts == [] and list(blocks) == []
    finally:
        reader.close()
