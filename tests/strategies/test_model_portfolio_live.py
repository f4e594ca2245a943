"""The model strategy paper trading a portfolio against the loopback exchange: one
checkpoint, a window per symbol filled from that symbol's own history files before the
first live bar, one inference job per close time for all symbols, forecasts and orders for
every symbol, none acted on before it arrived."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.checkpoint import save_checkpoint
from models.train import TrainConfig, train_model
from tests.helpers.live import LiveProcess, aligned_start_ms, query, start_exchange
from tests.helpers.live_portfolio import symbol_archives
from tests.helpers.model import OPTIONS, TINY, ar1_bars, first_forecast_due, write_bars

SYMBOLS = ("BTCUSDT", "ETHUSDT")
INTERVAL_MS = 2000
PRICES = {"BTCUSDT": 105_000.0, "ETHUSDT": 105_000.0 / 40}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_symbol_warms_up_forecasts_and_trades_live(tmp_path):
    bars = {s: ar1_bars(600, seed=3 + k, price=PRICES[s], step_ms=INTERVAL_MS)
            for k, s in enumerate(SYMBOLS)}
    history = ",".join(f"{s}={write_bars(b, tmp_path / f'{s}-history.csv')}" for s, b in bars.items())
    result = train_model(bars, TrainConfig(model="linformer", attention_options=OPTIONS["linformer"],
                                           **{**TINY, "interval": "2s"}))
    ckpt = tmp_path / "pooled.pt"
    save_checkpoint(ckpt, result.model, result.meta)
    ledger = tmp_path / "live.db"
    archives = symbol_archives(tmp_path, SYMBOLS)
    exchange = start_exchange(archives, tmp_path, speed=400, wall_start_ms=aligned_start_ms(lead_s=5))
    try:
        live = LiveProcess(exchange, tmp_path, ledger, "--symbols", ",".join(SYMBOLS),
                           "--strategy", "tests.helpers.model:WatchedWarmUp", "--param", f"checkpoint={ckpt}",
                           "--param", f"history={history}", "--param", "in_sample=true",
                           "--param", "notional=2000", duration="16s")
        done = live.wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    out, run_id = done.result, done.result["run_id"]
    assert out["status"] == "finished" and out["inference_errors"] == 0 and out["symbols"] == list(SYMBOLS)
    fills = query(ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (run_id,))
    assert set(fills.symbol) == set(SYMBOLS)
    for _, own in fills.groupby("symbol"):  # each symbol's position is its own fills' sum
        assert np.allclose(own.position, (own.side * own.qty).cumsum(), atol=1e-9)
    bars_live = query(ledger, "SELECT symbol, open_time FROM bars WHERE run_id = ? ORDER BY open_time",
                      (run_id,))
    forecasts = query(ledger, "SELECT * FROM predictions WHERE run_id = ? ORDER BY id", (run_id,))
    orders = query(ledger, "SELECT * FROM orders WHERE run_id = ?", (run_id,))
    saved = json.loads(query(ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id",
                             (run_id,)).state.iloc[-1])
    for symbol in SYMBOLS:
        mine = forecasts[forecasts.symbol == symbol]
        first_bar = bars_live[bars_live.symbol == symbol].open_time.min()
        assert len(mine) >= 4, symbol
        # the window was full at the symbol's first live bar (its own history), so it got a forecast;
        # or, when the history came after it (a loaded machine), the newest bar the warm-up held did
        due = first_forecast_due(saved, symbol, int(first_bar) + INTERVAL_MS * 1_000_000)
        assert mine.ts_event.iloc[0] == due, (symbol, saved["held_by_warmup"])
        on_time = mine[mine.dropped == 0]
        placed = orders[orders.symbol == symbol]
        assert len(placed) >= 1 and set(placed.ts_init) <= set(on_time.ts_init), symbol  # traded on arrival
    # the windows of one close time went to the model as one job: their forecasts arrived together
    # (but the first live bar's, when it waited for the warm-up: each symbol's came with its history)
    later = forecasts[forecasts.ts_event > forecasts.ts_event.min()]
    both = later.groupby("ts_event").filter(lambda g: len(g) == len(SYMBOLS))
    assert len(both) >= 6 and (both.groupby("ts_event").ts_init.nunique() == 1).all()
    assert set(saved["history_bars"]) == set(SYMBOLS) and min(saved["history_bars"].values()) > 0
